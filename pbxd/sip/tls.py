"""TLS for SIP (SIPS): the server certificate and the OpenSSL context (layer 2).

:func:`ensure_certificate` makes a self-signed certificate in ``state_dir``
the first time pbxd starts with ``sip.tls.certificate: auto`` and reuses it
afterwards, so phones that pinned it keep working across restarts.
:func:`context_factory` turns PEM files into a Twisted ``CertificateOptions``
that never negotiates anything older than TLS 1.2.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto
from twisted.internet.interfaces import IOpenSSLContextFactory
from twisted.internet.ssl import (
    AcceptableCiphers,
    CertificateOptions,
    TLSVersion,
)
from twisted.logger import Logger
from zope.interface import implementer

from pbxd.errors import ConfigError

log = Logger()

CERT_NAME = "pbxd-cert.pem"
KEY_NAME = "pbxd-key.pem"
TLS_SUBDIR = "tls"
VALIDITY_DAYS = 3650

#: Forward-secret AEAD suites only (TLS 1.3 suites are always on in OpenSSL).
MODERN_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"

_VERSIONS = {
    "1.2": TLSVersion.TLSv1_2,
    "1.3": TLSVersion.TLSv1_3,
}


def ensure_certificate(state_dir: str, common_name: str | None = None) -> tuple[str, str]:
    """Return ``(cert_path, key_path)`` of the automatic certificate in ``state_dir``.

    The pair is made on first use (EC P-256, self-signed, CN ``common_name``
    or the host name, SAN with it, ``localhost``, ``127.0.0.1`` and ``::1``)
    in ``state_dir/tls/``; the key file is mode 0600. Later calls return the
    existing files unchanged.
    """
    directory = os.path.join(state_dir, TLS_SUBDIR)
    cert_path = os.path.join(directory, CERT_NAME)
    key_path = os.path.join(directory, KEY_NAME)
    if os.path.exists(cert_path) and os.path.exists(key_path):
        return cert_path, key_path
    os.makedirs(directory, mode=0o700, exist_ok=True)
    name = common_name or socket.gethostname() or "localhost"
    cert_pem, key_pem = make_self_signed(name)
    _write_file(key_path, key_pem, 0o600)
    _write_file(cert_path, cert_pem, 0o644)
    log.info("Made a self-signed TLS certificate for {name} in {path}", name=name, path=cert_path)
    return cert_path, key_path


def make_self_signed(common_name: str) -> tuple[bytes, bytes]:
    """A self-signed certificate and its key, both PEM: ``(cert_pem, key_pem)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    alt_names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        alt_names.insert(0, x509.IPAddress(ipaddress.ip_address(common_name)))
    except ValueError:
        if common_name != "localhost":
            alt_names.insert(0, x509.DNSName(common_name))
    alt_names += [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert_pem, key_pem


def _write_file(path: str, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically, created with ``mode``."""
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def context_factory(
    cert: str,
    key: str,
    ca_file: str | None = None,
    verify_client: bool = False,
    min_version: str = "1.2",
) -> CertificateOptions:
    """A server ``CertificateOptions`` from PEM files.

    ``cert`` may hold a chain (leaf first). TLS 1.2 is the floor whatever
    ``min_version`` says ("1.2" or "1.3"); ciphers are forward-secret AEAD
    only. With ``verify_client`` the peer must present a certificate signed by
    one in ``ca_file``. Raises :class:`ConfigError` for unreadable files.
    """
    certs = _load_certificates(cert)
    private_key = _load_key(key)
    if min_version not in _VERSIONS:
        raise ConfigError("sip.tls.min_version", f"{min_version!r} is not one of 1.2, 1.3")
    ca_certs = None
    if verify_client:
        if not ca_file:
            raise ConfigError("sip.tls.ca_file", "required when verify_client is true")
        ca_certs = [crypto.X509.from_cryptography(c) for c in _load_certificates(ca_file)]
    return CertificateOptions(
        privateKey=crypto.PKey.from_cryptography_key(private_key),
        certificate=crypto.X509.from_cryptography(certs[0]),
        extraCertChain=[crypto.X509.from_cryptography(c) for c in certs[1:]] or None,
        raiseMinimumTo=_VERSIONS[min_version],
        acceptableCiphers=AcceptableCiphers.fromOpenSSLCipherString(MODERN_CIPHERS),
        verify=bool(verify_client),
        caCerts=ca_certs,
        requireCertificate=bool(verify_client),
        enableSessions=False,
        fixBrokenPeers=False,
    )


@implementer(IOpenSSLContextFactory)
class ReloadableContextFactory:
    """A server TLS context whose certificate can be replaced without a restart.

    ``build`` makes a fresh :class:`CertificateOptions` (it re-reads the PEM
    files). Twisted asks ``getContext()`` for every new connection, so after
    :meth:`reload_certificate` new handshakes use the new certificate while
    established connections keep theirs. A reload that fails (unreadable or
    mismatched files) raises :class:`ConfigError` and keeps the old one.
    """

    def __init__(self, build: Callable[[], CertificateOptions]) -> None:
        self._build = build
        self.options = build()
        self.options.getContext()  # fail at start, not at the first handshake

    def getContext(self) -> Any:  # noqa: N802 - Twisted's name
        """The OpenSSL context for the next connection."""
        return self.options.getContext()

    def reload_certificate(self) -> None:
        """Re-read the certificate and key (for the admin API's reload)."""
        options = self._build()
        try:
            options.getContext()
        except Exception as e:  # OpenSSL.SSL.Error: key does not match the certificate
            raise ConfigError("sip.tls.certificate", f"cannot use the new certificate: {e}") from None
        self.options = options
        log.info("TLS certificate reloaded")


def _load_certificates(path: str) -> list[x509.Certificate]:
    """All certificates in a PEM file; ConfigError if there are none."""
    try:
        with open(path, "rb") as f:
            certs = x509.load_pem_x509_certificates(f.read())
    except (OSError, ValueError) as e:
        raise ConfigError("sip.tls.certificate", f"cannot read certificate {path}: {e}") from None
    if not certs:
        raise ConfigError("sip.tls.certificate", f"no certificate in {path}")
    return certs


def _load_key(path: str):  # noqa: ANN202 - a cryptography private key
    """The private key of a PEM file; ConfigError if unreadable."""
    try:
        with open(path, "rb") as f:
            return serialization.load_pem_private_key(f.read(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError("sip.tls.private_key", f"cannot read private key {path}: {e}") from None
