"""pbxd.sip.tls.ReloadableContextFactory: new certificate without a restart, bad ones refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from OpenSSL import SSL

from pbxd.errors import ConfigError
from pbxd.sip.tls import ReloadableContextFactory, context_factory, make_self_signed


def write_pair(directory: Path, name: str) -> tuple[str, str]:
    cert, key = make_self_signed(name)
    (directory / f"{name}.crt").write_bytes(cert)
    (directory / f"{name}.key").write_bytes(key)
    return str(directory / f"{name}.crt"), str(directory / f"{name}.key")


def common_name(factory: ReloadableContextFactory) -> str:
    return factory.options.certificate.get_subject().CN


def test_reload_switches_certificate_for_new_connections(tmp_path: Path) -> None:
    cert, key = write_pair(tmp_path, "old.example")
    factory = ReloadableContextFactory(lambda: context_factory(cert, key))
    first = factory.getContext()
    assert isinstance(first, SSL.Context) and common_name(factory) == "old.example"
    new_cert, new_key = make_self_signed("new.example")
    Path(cert).write_bytes(new_cert)
    Path(key).write_bytes(new_key)
    factory.reload_certificate()
    assert common_name(factory) == "new.example"
    assert factory.getContext() is not first


def test_failed_reload_keeps_the_old_certificate(tmp_path: Path) -> None:
    cert, key = write_pair(tmp_path, "old.example")
    factory = ReloadableContextFactory(lambda: context_factory(cert, key))
    other_cert, _ = make_self_signed("other.example")
    Path(cert).write_bytes(other_cert)  # the key no longer matches
    with pytest.raises(ConfigError):
        factory.reload_certificate()
    assert common_name(factory) == "old.example"
    Path(cert).write_text("not a certificate")
    with pytest.raises(ConfigError):
        factory.reload_certificate()
    assert common_name(factory) == "old.example"


def test_context_refuses_tls_below_1_2(tmp_path: Path) -> None:
    cert, key = write_pair(tmp_path, "pbx.example")
    ctx = ReloadableContextFactory(lambda: context_factory(cert, key)).getContext()
    options = ctx.get_options() if hasattr(ctx, "get_options") else ctx.set_options(0)
    for flag in ("OP_NO_SSLv3", "OP_NO_TLSv1", "OP_NO_TLSv1_1"):
        assert options & getattr(SSL, flag), flag


def test_factory_declares_the_context_factory_interface_twisted_looks_for(tmp_path: Path) -> None:
    # without the declaration Twisted logs a LegacyContextFactoryWarning at every TLS listen
    from twisted.internet.interfaces import IOpenSSLContextFactory
    from zope.interface.verify import verifyObject

    cert, key = write_pair(tmp_path, "pbx.example")
    assert verifyObject(IOpenSSLContextFactory,
                        ReloadableContextFactory(lambda: context_factory(cert, key)))
