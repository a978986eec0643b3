"""Qualify against a real phone (issue 3, NAT: "Bindings are qualified with OPTIONS at a
configurable interval; one that stops answering is marked unreachable and not used").

baresip answers the OPTIONS pbxd sends, so its binding is reachable with a round-trip
time. Frozen with SIGSTOP (a phone that lost power or network, without unregistering), it
stops answering: its binding turns unreachable and a call to it gets 480 instead of
ringing nowhere. Thawed, it answers the next round and is called again.
"""

from __future__ import annotations

import os
import signal

import pytest

from .harness import EXTENSIONS
from .sipp import run_sipp
from .test_admin import api
from .test_calls import DIAL_ONLY, SCENARIOS, auth_uri, caller_inf
from .test_registrar import wait_until

QUALIFY = {"qualify_interval": 1, "qualify_timeout": 0.5}


@pytest.mark.needs_baresip
@pytest.mark.needs_sipp
def test_unanswered_options_make_a_binding_unreachable_until_it_answers(
        pbx_factory, baresip_factory, tmp_path):
    pbx = pbx_factory(overrides={**DIAL_ONLY, "registrar": QUALIFY})
    phone = baresip_factory("b", user="1001", password=EXTENSIONS["1001"],
                            server=("127.0.0.1", pbx.udp_port), transport="udp")
    phone.wait_registered()

    def binding() -> dict:
        (row,) = api(pbx, "/registrations/1001")
        return row

    wait_until(lambda: binding()["rtt"] is not None, 5, "an OPTIONS answered by baresip")
    assert binding()["reachable"] is True

    def call_status() -> str:
        result = run_sipp(SCENARIOS / "call_uac_fail.xml", f"127.0.0.1:{pbx.udp_port}",
                          tmp_path / "uac", service="1001", calls=1, inf=caller_inf(tmp_path),
                          timeout=10, extra=auth_uri(pbx, "1001"))
        return result.messages

    assert phone.proc is not None
    os.kill(phone.proc.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: binding()["reachable"] is False, 5, "the frozen phone unreachable")
        assert binding()["rtt"] is None
        assert "SIP/2.0 480 " in call_status()
        assert "of 1001 is now unreachable" in pbx.log_text()
    finally:
        os.kill(phone.proc.pid, signal.SIGCONT)
    wait_until(lambda: binding()["reachable"] is True, 5, "the thawed phone reachable again")
    assert "of 1001 is now reachable" in pbx.log_text()
    pbx.check_log()
