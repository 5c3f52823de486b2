"""TLS for remoting connections: what each side needs, and the `ssl.SSLContext` built from it.

RocketMQ's model (`TlsSystemConfig`, `TlsHelper`), in Python spelling:

- A server (NameServer, broker) has a mode. `PERMISSIVE`, RocketMQ's default, serves plain and TLS
  clients on one port: the first byte of a connection tells which (`tls_session.TlsGate`).
  `ENFORCING` closes plain connections, `DISABLED` serves plain only.
- A server with no certificate of its own uses a self-signed one made at the first TLS handshake
  (RocketMQ's `tls.test.mode.enable`, on by default there): the connection is encrypted, and
  nobody can check whom the client talks to.
- A client (`ClientTls`) encrypts. By default it does not verify the server, as RocketMQ's
  clients do not (`tls.client.authServer=false`); `verify=True` checks the server's chain
  against `trust_cert_path` (or the system's CAs), and `check_hostname=True` also its name.

Reading these from RocketMQ's `tls.*` keys is `tls_config.load_tls`.
"""

from __future__ import annotations

import datetime
import enum
import functools
import ipaddress
import logging
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rmqkit.errors import ConfigurationError

if TYPE_CHECKING:
    from cryptography import x509

log = logging.getLogger("rmqkit.remoting.tls")

ClientAuth = Literal["none", "optional", "require"]


class TlsMode(enum.StrEnum):
    """`tls.server.mode`: which connections a server accepts."""

    DISABLED = "disabled"
    """Plain connections only; a TLS handshake is closed."""
    PERMISSIVE = "permissive"
    """Plain and TLS connections on the same port (RocketMQ's default)."""
    ENFORCING = "enforcing"
    """TLS connections only; a plain one is closed."""


@dataclass(frozen=True)
class ServerTls:
    """The server side: which connections to accept, and the certificate to show."""

    mode: TlsMode = TlsMode.PERMISSIVE
    cert_path: Path | None = None
    """PEM certificate chain (`tls.server.certPath`). None: a self-signed certificate."""
    key_path: Path | None = None
    """PEM private key of `cert_path` (`tls.server.keyPath`)."""
    key_password: str | None = field(default=None, repr=False)
    """Password of an encrypted `key_path` (`tls.server.keyPassword`)."""
    client_auth: ClientAuth = "none"
    """Ask clients for a certificate (`tls.server.need.client.auth`); one that is asked for is
    verified against `trust_cert_path`, or the system's CAs when there is none."""
    trust_cert_path: Path | None = None
    """PEM CA certificates client certificates must chain to (`tls.server.trustCertPath`)."""

    def context(self) -> ssl.SSLContext:
        """The server's `SSLContext`; a self-signed one when no certificate is configured.

        Raises:
            ConfigurationError: a file cannot be read, or the key does not fit the certificate.
        """
        if self.cert_path is None:
            return _self_signed_server_context()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        _load_chain(ctx, self.cert_path, self.key_path, self.key_password, "tls.server")
        if self.client_auth != "none":
            required = self.client_auth == "require"
            ctx.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
            trust = self.trust_cert_path
            _load_trust(ctx, trust, "tls.server.trustCertPath", ssl.Purpose.CLIENT_AUTH)
        return ctx


@dataclass(frozen=True)
class ClientTls:
    """The client side: encrypt, and how far to trust the server."""

    verify: bool = False
    """Check the server's certificate chain (`tls.client.authServer`). False, RocketMQ's default,
    encrypts without knowing whom it talks to."""
    trust_cert_path: Path | None = None
    """PEM CA certificates the server's chain must end in (`tls.client.trustCertPath`); None:
    the system's CAs."""
    check_hostname: bool = False
    """Also check that the certificate names the address connected to (`verify` only). RocketMQ
    clients never do; brokers are often reached by IP addresses their certificates lack."""
    cert_path: Path | None = None
    """PEM certificate chain shown to servers that ask for one (`tls.client.certPath`)."""
    key_path: Path | None = None
    """PEM private key of `cert_path` (`tls.client.keyPath`)."""
    key_password: str | None = field(default=None, repr=False)
    """Password of an encrypted `key_path` (`tls.client.keyPassword`)."""

    def context(self) -> ssl.SSLContext:
        """The client's `SSLContext` (cached: clients open many connections).

        Raises:
            ConfigurationError: a file cannot be read, or the key does not fit the certificate.
        """
        return _client_context(self)


@functools.cache
def _client_context(tls: ClientTls) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.verify:
        _load_trust(ctx, tls.trust_cert_path, "tls.client.trustCertPath", ssl.Purpose.SERVER_AUTH)
        ctx.check_hostname = tls.check_hostname
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        log.info("TLS to brokers and NameServers without verifying their certificates")
    if tls.cert_path is not None:
        _load_chain(ctx, tls.cert_path, tls.key_path, tls.key_password, "tls.client")
    return ctx


def _load_chain(
    ctx: ssl.SSLContext, cert: Path, key: Path | None, password: str | None, prefix: str
) -> None:
    try:
        ctx.load_cert_chain(cert, key, password)
    except FileNotFoundError as exc:
        raise ConfigurationError(
            f"{prefix}.certPath={str(cert)!r} / {prefix}.keyPath={str(key)!r}: no such file"
            f" ({exc.filename})"
        ) from None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"{prefix}.certPath={str(cert)!r} / {prefix}.keyPath={str(key)!r}: cannot load the"
            f" certificate and its key (PEM files, and {prefix}.keyPassword for an encrypted"
            f" key): {exc}"
        ) from None


def _load_trust(ctx: ssl.SSLContext, path: Path | None, key: str, purpose: ssl.Purpose) -> None:
    if path is None:
        ctx.load_default_certs(purpose)
        return
    try:
        ctx.load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"{key}={str(path)!r}: cannot load CA certificates: {exc}"
        ) from None


@functools.cache
def _self_signed_server_context() -> ssl.SSLContext:
    """One self-signed certificate per process, made when the first TLS client arrives."""
    cert_pem, key_pem = self_signed_certificate("rmqkit")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # load_cert_chain reads files only; the folder is gone as soon as they are loaded.
    with tempfile.TemporaryDirectory(prefix="rmqkit-tls-") as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(key_pem)
        ctx.load_cert_chain(cert, key)
    log.info("TLS with a self-signed certificate (no tls.server.certPath configured)")
    return ctx


def self_signed_certificate(
    common_name: str,
    *,
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1"),
    days: int = 365,
) -> tuple[bytes, bytes]:
    """A new P-256 key and a certificate signed by itself, for `hosts`, as PEM (cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(subject_alt_names(hosts), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def subject_alt_names(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    """`hosts` as a certificate's names: IP addresses as such, anything else as a DNS name."""
    from cryptography import x509

    alt: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(alt)
