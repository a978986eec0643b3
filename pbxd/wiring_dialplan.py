"""Composition of the calls layer and the dialplan (layer 7, beside ``pbxd.service``).

- :func:`make_calls` / :func:`connect_calls` build the
  :class:`~pbxd.calls.manager.CallManager` (RTP ports, the compiled dialplan,
  the services registry) and give it the SIP stack's parts;

- :func:`compile_dialplan` discovers the applications (built-ins and
  ``plugins:``) and compiles ``config.dialplan``; it raises
  :class:`~pbxd.errors.ConfigError` naming the rule, so ``twistd pbx``
  refuses a bad dialplan while parsing its options (``pbxd.tap``).
- :class:`DialplanSeam` is what :class:`~pbxd.calls.manager.CallManager` is
  given: ``matches(context, number)`` and ``run(call_context)``, so
  ``pbxd.calls`` never imports ``pbxd.dialplan``.
- :func:`build_services` is the registry behind ``ICallContext.service``
  (interface -> provider); parts that serve applications (voicemail) add
  theirs to it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import endpoints
from twisted.internet.defer import Deferred

from pbxd.configschema import Config
from pbxd.dialplan import Dialplan, DialplanRunner, discover_applications
from pbxd.listeners import stream_limits
from pbxd.sip.transport import SIPStreamFactory

__all__ = ["DialplanSeam", "build_services", "compile_dialplan", "connect_calls", "make_calls"]


def compile_dialplan(config: Config) -> Dialplan:
    """The checked dialplan of ``config``; ConfigError names the rule at fault."""
    return Dialplan.compile(config.dialplan, discover_applications(config.plugins))


class DialplanSeam:
    """The dialplan as the calls layer sees it (one runner per compiled dialplan)."""

    def __init__(self, dialplan: Dialplan) -> None:
        self.runner = DialplanRunner(dialplan)

    def replace(self, dialplan: Dialplan) -> None:
        """A reloaded dialplan for new calls (calls in progress finish on the old one)."""
        self.runner = DialplanRunner(dialplan)

    def matches(self, context: str, number: str) -> bool:
        """True when ``number`` has a rule in ``context`` (or a context it includes)."""
        return self.runner.dialplan.route(context, number) is not None

    def run(self, call: Any) -> Deferred[Any]:
        """Run ``call`` (an ICallContext); never fails."""
        return self.runner.run(call)


def build_services(config: Config) -> dict[Any, Any]:
    """The services applications reach through ``ICallContext.service(interface)``.

    Empty for now: the voicemail part adds ``{IVoicemailService: provider}``."""
    return {}


def custom_prompt_dirs(config: Config) -> tuple[str, ...]:
    """Where a prompt name is looked up before pbxd's own prompts: ``voicemail.greeting_dir``
    (``NAME.wav`` there replaces the prompt NAME everywhere, as Asterisk's sounds do)."""
    folder = config.voicemail.greeting_dir
    return (folder,) if folder else ()


def make_calls(config: Config, reactor: Any, location: Any, cdr_store: Any,
                extensions: Any) -> Any:
    """The B2BUA: a CallManager with RTP ports from ``rtp:`` (SIP parts attached later)."""
    from pbxd.calls.call import CallDeps
    from pbxd.calls.manager import CallManager, ExtensionRouter
    from pbxd.rtp.ports import PortAllocator
    from pbxd.rtp.relay import LegMedia

    rtp = config.rtp
    ports = PortAllocator(reactor.listenUDP, rtp.address, rtp.port_range[0], rtp.port_range[1])
    deps = CallDeps(
        clock=reactor,
        ua=None,
        registry=None,
        new_media=lambda name: LegMedia(ports, reactor, name),
        sdp_address=lambda transport, address: "",
        realm=config.pbx.realm,
        no_answer_timeout=config.calls.no_answer_timeout,
        host=config.pbx.realm,
    )
    manager = CallManager(deps, None, location, ExtensionRouter(extensions), cdr_store,
                          rtp_timeout=rtp.timeout,
                          dialplan=DialplanSeam(compile_dialplan(config)),
                          services=build_services(config),
                          prompt_dirs=custom_prompt_dirs(config))
    manager.setName("calls")
    return manager


def connect_calls(manager: Any, stack: Any, config: Config, reactor: Any) -> None:
    """Give the CallManager the transaction layer, a UserAgent and outbound connections."""
    from pbxd.sip.ua import WILDCARDS, UserAgent, route_source_address

    ua = UserAgent(stack.transactions, stack.connector, reactor,
                   external_address=config.pbx.external_address,
                   user_agent=config.pbx.user_agent, max_forwards=config.calls.max_forwards)
    manager.transactions = stack.transactions
    manager.deps.ua = ua
    stack.connector.connect = lambda name, address: _connect_stream(
        reactor, stack, config, name, address)
    rtp_address = config.rtp.address

    def sdp_address(transport: Any, address: Any) -> str:
        if config.pbx.external_address:
            return config.pbx.external_address
        if rtp_address not in WILDCARDS:
            return rtp_address
        if isinstance(transport, str):
            return route_source_address(address[0]) or "127.0.0.1"
        return ua.local_host_port(transport, address)[0]

    manager.deps.sdp_address = sdp_address


def _connect_stream(reactor: Any, stack: Any, config: Config, name: str,
                    address: Any) -> Deferred:
    """Open a TCP/TLS connection to a phone that has none open (no certificate check)."""
    from twisted.internet import ssl

    factory = SIPStreamFactory(stack.controller, reactor, secure=name == "TLS",
                               connections=stack.connections,
                               max_message_size=config.sip.max_message_size,
                               **stream_limits(config))
    if name == "TLS":
        endpoint: Any = endpoints.SSL4ClientEndpoint(
            reactor, address[0], address[1], ssl.CertificateOptions(verify=False))
    else:
        endpoint = endpoints.TCP4ClientEndpoint(reactor, address[0], address[1])
    return endpoint.connect(factory)
