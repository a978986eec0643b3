"""Registrations with odd contacts, then calls to them: answered, never a traceback.

The live fuzz run registers such contacts at random; this test goes through each
one deterministically on one server (register 1002 with it, call 1002 from 1000,
give up after a moment; qualify OPTIONS go out every second) and names the
contact after which a traceback appeared.
"""

from __future__ import annotations

import random
import time

import pytest

from .test_fuzz_live import TRUSTED, Caller

pytestmark = pytest.mark.integration

ODD_CONTACTS = [
    "Contact: <sip:1002@{me};transport=sctp>\r\n",
    "Contact: <sip:1002@{me};transport=x>;expires=abc;q=x\r\n",
    "Contact: <sip:1002@{me};transport=tcp>\r\n",
    "Contact: <sip:1002@{me};transport=tls>\r\n",
    'Contact: "we\\"ird" <sips:1002@[::1]:5061>;+sip.instance="<urn:uuid:00000000-0000-0000-'
    '0000-000000000001>";reg-id=x\r\n',
    "Contact: <tel:+15551234>\r\n",
    "Contact: <sip:@>\r\n",
    "Contact: garbage\r\n",
    "Contact: <sip:1002@127.0.0.3:0>\r\n",
    "Contact: <sip:1002@127.0.0.3>\r\nExpires: 99999999999\r\n",
    "Contact: <sip:1002@127.0.0.1:{port}>;expires=60\r\n",  # the server itself
]


def test_odd_contacts_are_registered_or_refused_and_called_without_a_traceback(pbx_factory):
    pbx = pbx_factory(overrides={
        "security": {"trusted_networks": [f"{TRUSTED}/32"]},
        "registrar": {"qualify_interval": 1, "qualify_timeout": 0.5},
        "calls": {"drain_time": 0, "no_answer_timeout": 2},
    })
    caller = Caller(TRUSTED, pbx.udp_port, random.Random(1))
    outcomes = {}
    try:
        for contact in ODD_CONTACTS:
            caller.contacts = lambda c=contact: c.format(  # type: ignore[method-assign]
                me=caller.via_host, port=pbx.udp_port)
            status = caller.register()
            assert status is not None and (200 <= status < 300 or 400 <= status < 500), (
                contact, status)
            outcomes[contact] = (status, caller.call("1002"))
            assert "Traceback" not in pbx.log_text(), contact
        time.sleep(1.5)  # a qualify round reaches whatever is still registered
    finally:
        caller.close()
    pbx.stop()
    pbx.check_log()  # no Traceback, also none logged at shutdown
    assert len(outcomes) == len(ODD_CONTACTS)
