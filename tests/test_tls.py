"""pbxd.sip.tls: the automatic certificate and the server TLS context."""

from __future__ import annotations

import ipaddress
import os
import stat

import pytest
from cryptography import x509
from OpenSSL import SSL

from pbxd.errors import ConfigError
from pbxd.sip.tls import context_factory, ensure_certificate


def _handshake(server_ctx: SSL.Context, client_ctx: SSL.Context) -> SSL.Connection:
    """Run a TLS handshake in memory; return the server connection or raise SSL.Error."""
    server = SSL.Connection(server_ctx, None)
    server.set_accept_state()
    client = SSL.Connection(client_ctx, None)
    client.set_connect_state()
    for _ in range(20):
        done = 0
        for conn in (client, server):
            try:
                conn.do_handshake()
                done += 1
            except SSL.WantReadError:
                pass
        for src, dst in ((client, server), (server, client)):
            try:
                dst.bio_write(src.bio_read(65536))
            except SSL.WantReadError:
                pass
        if done == 2:
            return server
    raise AssertionError("handshake did not finish")


def _client(max_version: int) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_verify(SSL.VERIFY_NONE, lambda *a: True)
    ctx.set_max_proto_version(max_version)
    return ctx


def test_auto_certificate_is_made_once_and_reused(tmp_path):
    cert, key = ensure_certificate(str(tmp_path), "pbx.example.org")
    assert os.path.dirname(cert).startswith(str(tmp_path))
    first = open(cert, "rb").read()
    first_key = open(key, "rb").read()
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600

    again = ensure_certificate(str(tmp_path), "other.name")
    assert again == (cert, key)
    assert open(cert, "rb").read() == first
    assert open(key, "rb").read() == first_key


def test_auto_certificate_names_realm_and_loopback(tmp_path):
    cert, _ = ensure_certificate(str(tmp_path), "pbx.example.org")
    parsed = x509.load_pem_x509_certificate(open(cert, "rb").read())
    cn = parsed.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
    assert cn == "pbx.example.org"
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert "pbx.example.org" in san.get_values_for_type(x509.DNSName)
    ips = san.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("127.0.0.1") in ips
    assert ipaddress.ip_address("::1") in ips


def test_context_disables_tls_1_1_and_older(tmp_path):
    cert, key = ensure_certificate(str(tmp_path), "localhost")
    ctx = context_factory(cert, key).getContext()
    options = ctx.set_options(0)  # returns the current option mask
    assert options & SSL.OP_NO_TLSv1_1
    assert options & SSL.OP_NO_TLSv1
    assert not options & SSL.OP_NO_TLSv1_2


def test_context_accepts_tls_1_2_client_and_refuses_tls_1_1(tmp_path):
    cert, key = ensure_certificate(str(tmp_path), "localhost")
    server_ctx = context_factory(cert, key).getContext()
    server = _handshake(server_ctx, _client(SSL.TLS1_2_VERSION))
    assert server.get_protocol_version_name() == "TLSv1.2"
    with pytest.raises(SSL.Error):
        _handshake(context_factory(cert, key).getContext(), _client(SSL.TLS1_1_VERSION))


def test_min_version_1_3_refuses_tls_1_2(tmp_path):
    cert, key = ensure_certificate(str(tmp_path), "localhost")
    ctx = context_factory(cert, key, min_version="1.3").getContext()
    assert ctx.set_options(0) & SSL.OP_NO_TLSv1_2


def test_verify_client_without_ca_file_is_a_config_error(tmp_path):
    cert, key = ensure_certificate(str(tmp_path), "localhost")
    with pytest.raises(ConfigError) as err:
        context_factory(cert, key, verify_client=True)
    assert "sip.tls.ca_file" in str(err.value)


def test_unreadable_certificate_is_a_config_error_naming_the_file(tmp_path):
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(ConfigError) as err:
        context_factory(missing, missing)
    assert "nope.pem" in str(err.value)
    assert "sip.tls.certificate" in str(err.value)
