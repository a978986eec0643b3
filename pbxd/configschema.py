"""The typed configuration objects (layer 1, pure: stdlib and layer 0 only).

Every section of ``etc/config.yml`` is a frozen dataclass with defaults; the
whole file is a :class:`Config`. They are built and validated by
:func:`pbxd.config.parse_config` / :func:`pbxd.config.load_config`: build them
that way, because the defaults here are not yet resolved against a directory
(``PBXConfig.state_dir`` is ``"var"``, the store URL is relative).

See ``docs/configuration.md`` for what each key does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from pbxd import __version__

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ListenSpec:
    """One SIP (or admin) listener parsed from an endpoint string.

    ``transport`` is ``'UDP'``, ``'TCP'`` or ``'TLS'``; ``interface`` is an IP
    literal without brackets or ``""`` for all interfaces; ``endpoint`` is the
    string as written in the file; ``options`` holds the other ``name=value``
    parts of a Twisted endpoint string (``backlog``, ``privateKey`` ...).
    """

    transport: str
    port: int
    interface: str = ""
    endpoint: str = ""
    options: tuple[tuple[str, str], ...] = ()


DEFAULT_LISTEN = (
    ListenSpec("UDP", 5060, "", "udp:5060"),
    ListenSpec("TCP", 5060, "", "tcp:5060"),
    ListenSpec("TLS", 5061, "", "tls:5061"),
)


@dataclass(frozen=True, slots=True)
class PBXConfig:
    """``pbx:`` identity of the server and where it keeps its state."""

    realm: str = "pbxd.local"
    state_dir: str = "var"
    external_address: str | None = None
    user_agent: str = f"pbxd/{__version__}"


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """``sip.tls:`` certificate and policy for TLS listeners.

    ``certificate`` / ``private_key`` are ``"auto"`` (a self-signed pair is made
    in ``state_dir``) or absolute paths of readable PEM files.
    """

    certificate: str = "auto"
    private_key: str = "auto"
    ca_file: str | None = None
    verify_client: bool = False
    min_version: str = "1.2"

    @property
    def auto(self) -> bool:
        """True when pbxd makes its own self-signed certificate."""
        return self.certificate == "auto"


@dataclass(frozen=True, slots=True)
class Timers:
    """``sip.timers:`` RFC 3261 T1, T2 and T4 in seconds."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0


@dataclass(frozen=True, slots=True)
class SIPConfig:
    """``sip:`` listeners, TLS, transaction timers and limits."""

    listen: tuple[ListenSpec, ...] = DEFAULT_LISTEN
    tls: TLSConfig = field(default_factory=TLSConfig)
    timers: Timers = field(default_factory=Timers)
    max_message_size: int = 65535  # kept equal to limits.max_message_size

    def listeners(self, transport: str) -> tuple[ListenSpec, ...]:
        """The listeners of one transport (``'UDP'``, ``'TCP'`` or ``'TLS'``)."""
        return tuple(spec for spec in self.listen if spec.transport == transport)


@dataclass(frozen=True, slots=True)
class OverloadConfig:
    """``limits.overload:`` when new INVITEs get ``503`` with ``Retry-After``.

    ``max_loop_lag`` seconds of event-loop lateness (0 disables the lag check),
    ``max_call_rate`` new calls per second over all sources (0: no limit),
    ``retry_after`` the seconds put in ``Retry-After``.
    """

    max_loop_lag: float = 0.5
    max_call_rate: float = 100.0
    retry_after: int = 5


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """``limits:`` what one source (or all of them) may make pbxd hold.

    Every limit has a safe default; exceeding one is answered (``513``,
    ``503``, ``400``) or closes the connection. See docs/security.md.
    """

    max_message_size: int = 65535  # bytes, UDP and stream (alias: sip.max_message_size)
    max_headers: int = 256  # header fields in one message
    max_header_length: int = 8192  # bytes of one header field (after unfolding)
    max_connections: int = 4096  # open TCP/TLS connections, all sources
    max_connections_per_source: int = 64  # open TCP/TLS connections from one IP
    idle_timeout: float = 600.0  # seconds without a byte before a connection is closed
    incomplete_timeout: float = 10.0  # seconds a partial message may stay buffered
    max_transactions_per_source: int = 1000  # live server transactions from one IP
    max_dialogs_per_source: int = 200  # calls in progress from one IP
    max_outstanding_nonces: int = 16384  # nonce-count table size (digest replay protection)
    overload: OverloadConfig = field(default_factory=OverloadConfig)


@dataclass(frozen=True, slots=True)
class RegistrarConfig:
    """``registrar:`` binding lifetimes, limits, NAT handling and qualify (OPTIONS pings)."""

    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    max_contacts: int = 10
    nat: str = "auto"  # 'auto' | 'always' | 'never'
    qualify_interval: float = 30.0  # 0 disables
    qualify_timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class RTPConfig:
    """``rtp:`` where media is anchored."""

    address: str = "0.0.0.0"
    port_range: tuple[int, int] = (10000, 20000)
    timeout: float = 30.0  # seconds without media that end a call; 0 disables


@dataclass(frozen=True, slots=True)
class CallsConfig:
    """``calls:`` call-control limits."""

    no_answer_timeout: float = 30.0
    max_forwards: int = 70
    drain_time: float = 10.0  # seconds calls may go on after SIGTERM before BYE (0: none)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``security.rate_limit:`` at most ``requests`` per ``window`` seconds per source."""

    requests: int = 200  # 0 disables
    window: float = 2.0


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    """``security:`` authentication, bans and flood limits."""

    require_authentication: bool = True
    max_failed_attempts: int = 5  # 0 disables banning
    failure_window: float = 60.0
    ban_duration: float = 300.0
    trusted_networks: tuple[IPNetwork, ...] = ()
    digest_algorithms: tuple[str, ...] = ("MD5",)
    nonce_lifetime: float = 300.0
    rate_limit: RateLimit = field(default_factory=RateLimit)

    def is_trusted(self, address: str) -> bool:
        """True if ``address`` (an IP literal) is inside one of ``trusted_networks``."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip.version == net.version and ip in net for net in self.trusted_networks)


@dataclass(frozen=True, slots=True)
class Extension:
    """One ``extensions:`` entry: a SIP account. At least one credential is set."""

    number: str
    name: str = ""
    password: str | None = None
    ha1: str | None = None  # 32 lower-case hex: MD5(number:realm:password)
    ha1_sha256: str | None = None  # 64 lower-case hex: SHA-256(number:realm:password)
    context: str = "default"
    max_contacts: int | None = None  # None: registrar.max_contacts
    voicemail_pin: str | None = None
    record: bool = False  # every call this extension makes or receives is recorded


@dataclass(frozen=True, slots=True)
class Step:
    """One dialplan step: an application name and its arguments (any YAML value, or None)."""

    app: str
    args: object = None


@dataclass(frozen=True, slots=True)
class Rule:
    """One dialplan rule: a pattern and the steps run when it matches.

    An include rule (``- include: other``) has no match or steps: the rules of
    context ``include`` are tried after this context's own.
    """

    match: str
    steps: tuple[Step, ...]
    include: str | None = None


def default_dialplan() -> Mapping[str, tuple[Rule, ...]]:
    """The dialplan used when the file has no ``dialplan:`` (fresh objects each call)."""
    return MappingProxyType(
        {
            "default": (
                Rule(
                    "_1XXX",
                    (
                        Step("dial", {"to": "${EXTEN}", "timeout": 20}),
                        Step("voicemail", {"box": "${EXTEN}"}),
                    ),
                ),
                Rule("*43", (Step("answer"), Step("echo"))),
                Rule("*98", (Step("voicemail_main"),)),
            )
        }
    )


@dataclass(frozen=True, slots=True)
class AdminToken:
    """An admin API bearer token. Only its SHA-256 (lower-case hex) is kept."""

    name: str
    sha256: str


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """``admin:`` the JSON API and web page. ``listen`` None disables it.

    ``rate_limit``: requests per source IP per window over the whole API
    (429 beyond it; trusted networks exempt; 0 requests disables it).
    """

    listen: str | None = "tcp:8080:interface=127.0.0.1"
    tokens: tuple[AdminToken, ...] = ()
    rate_limit: RateLimit = field(default_factory=lambda: RateLimit(100, 10.0))


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """``store:`` the database. After parsing, a SQLite URL holds an absolute path."""

    url: str = "sqlite:pbxd.sqlite"
    commit_window: float = 0.02  # s between group commits under load; 0: each at once

    @property
    def kind(self) -> str:
        """``'sqlite'`` or ``'postgresql'``."""
        return "sqlite" if self.url.startswith("sqlite:") else "postgresql"

    @property
    def sqlite_path(self) -> str | None:
        """The SQLite database file (or ``':memory:'``), None for PostgreSQL."""
        return self.url[len("sqlite:") :] if self.kind == "sqlite" else None


@dataclass(frozen=True, slots=True)
class VoicemailConfig:
    """``voicemail:`` limits and where greetings are found."""

    max_message_seconds: float = 180.0
    min_message_seconds: float = 1.0
    max_messages: int = 100
    greeting_dir: str | None = None  # absolute after parsing
    silence_seconds: float = 5.0  # a message stops after this much silence (0: never)
    unsolicited_mwi: bool = False  # NOTIFY registered phones without a subscription
    email: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # box -> address
    smtp: SMTPConfig | None = None  # voicemail to email; None: off


@dataclass(frozen=True, slots=True)
class SMTPConfig:
    """``voicemail.smtp:`` the mail server new messages are sent through (``from`` in the file)."""

    host: str
    port: int = 25
    sender: str = "pbxd@localhost"
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class RecordingConfig:
    """``recording:`` call recording (the ``record_call`` dialplan application)."""

    stereo: bool = False  # one party per channel instead of one mixed track
    announce: bool = False  # play "call-recorded" to both parties before the bridge
    retention_days: float = 90.0  # recordings older than this are deleted (0: kept forever)
    sweep_interval: float = 3600.0
    extensions: tuple[str, ...] = ()  # calls made or received by these are recorded ("*": all)
    folder: str | None = None  # None: state_dir/recordings


@dataclass(frozen=True, slots=True)
class MOHConfig:
    """``moh:`` music on hold for the party a phone puts on hold."""

    enabled: bool = True
    folder: str | None = None  # a folder of 8 kHz mono WAV files; None: pbxd's own music
    shuffle: bool = True


def _no_extensions() -> Mapping[str, Extension]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration. ``source`` is the path of the file as given (for reload)."""

    source: str = "<config>"
    pbx: PBXConfig = field(default_factory=PBXConfig)
    sip: SIPConfig = field(default_factory=SIPConfig)
    registrar: RegistrarConfig = field(default_factory=RegistrarConfig)
    rtp: RTPConfig = field(default_factory=RTPConfig)
    calls: CallsConfig = field(default_factory=CallsConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    extensions: Mapping[str, Extension] = field(default_factory=_no_extensions)
    dialplan: Mapping[str, tuple[Rule, ...]] = field(default_factory=default_dialplan)
    admin: AdminConfig = field(default_factory=AdminConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    voicemail: VoicemailConfig = field(default_factory=VoicemailConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    moh: MOHConfig = field(default_factory=MOHConfig)
    plugins: tuple[str, ...] = ()
