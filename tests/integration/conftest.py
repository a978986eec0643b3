"""Fixtures for integration tests: the real server, SIP clients, tones.

- ``pbx``: a started :class:`~.harness.PbxServer` with the default test config
  (UDP+TCP on one free port, TLS on another, admin API on a third, extensions
  1000-1002 with passwords ``pw-1000``...). Stopped at teardown; the test fails
  if the server logged a Traceback (mark the test ``@pytest.mark.allow_traceback``
  to opt out).
- ``pbx_factory(**kwargs)``: the same with ``overrides={...}`` (deep-merged into
  the YAML), ``transports=(...)``, ``admin=False``, ``start=False``.
- ``baresip_factory(name, **kwargs)``: a :class:`~.baresip.Baresip` phone in
  ``tmp_path/name``, stopped at teardown.

Every test in this folder carries the ``integration`` marker
(``pytest -m "not integration"`` runs the unit tests only).
"""

from __future__ import annotations

import pytest

from .baresip import Baresip
from .harness import PbxServer


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/integration/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def pbx_factory(tmp_path, request):
    servers: list[PbxServer] = []
    allow = request.node.get_closest_marker("allow_traceback") is not None

    def make(*, start: bool = True, name: str | None = None, **kwargs) -> PbxServer:
        kwargs.setdefault("allow_traceback", allow)
        workdir = tmp_path / (name or f"pbx{len(servers)}")
        server = PbxServer(workdir, **kwargs)
        servers.append(server)
        if start:
            server.start()
        return server

    yield make
    errors = []
    for server in servers:
        try:
            server.close()
        except AssertionError as exc:
            errors.append(str(exc))
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture
def pbx(pbx_factory) -> PbxServer:
    return pbx_factory()


@pytest.fixture
def baresip_factory(tmp_path):
    phones: list[Baresip] = []

    def make(name: str, **kwargs) -> Baresip:
        phone = Baresip(tmp_path / name, **kwargs)
        phones.append(phone)
        return phone.start()

    yield make
    for phone in phones:
        phone.stop()
