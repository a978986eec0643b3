"""``pbxctl``: a command-line client of the pbxd admin API (standard library only).

::

    pbxctl [--url URL] [--token TOKEN | --token-file FILE] [--json] COMMAND [ARGS]
    pbxctl -rx "COMMAND ARGS"          # Asterisk's habit: one quoted command

The token comes from ``--token``, else ``--token-file``, else the
``PBXCTL_TOKEN`` environment variable, else ``PBXCTL_TOKEN_FILE``; the URL
from ``--url``, else ``PBXCTL_URL``, else ``http://127.0.0.1:8080``.
Output is a plain table (``--json`` for the API's JSON); errors go to
stderr with the API's message and the exit status is 1 (2 for usage).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, TextIO

DEFAULT_URL = "http://127.0.0.1:8080"
API = "/api/v1"

#: Asterisk CLI phrases accepted after -rx, mapped to pbxctl commands.
ASTERISK_ALIASES = {
    ("core", "show", "channels"): ["calls"],
    ("core", "show", "calls"): ["calls"],
    ("sip", "show", "peers"): ["registrations"],
    ("sip", "show", "registry"): ["registrations"],
    ("pjsip", "show", "contacts"): ["registrations"],
    ("pjsip", "show", "endpoints"): ["extensions"],
    ("core", "reload"): ["reload"],
    ("module", "reload"): ["reload"],
    ("channel", "request", "hangup"): ["hangup"],
    ("channel", "originate"): ["originate"],
}


class CtlError(Exception):
    """An error to print (the API's message, or why the server could not be reached)."""


class Client:
    """Talks JSON to the admin API with a bearer token."""

    def __init__(self, url: str, token: str | None, timeout: float = 10.0,
                 opener: Callable[..., Any] = urllib.request.urlopen) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.opener = opener

    def request(self, method: str, path: str, body: Any = None,
                query: dict[str, Any] | None = None) -> tuple[Any, str]:
        """``(decoded body, content type)``; raises CtlError for an error answer."""
        params = {k: v for k, v in (query or {}).items() if v is not None}
        url = self.url + API + path + ("?" + urllib.parse.urlencode(params) if params else "")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with self.opener(request, timeout=self.timeout) as response:
                raw = response.read()
                kind = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            raise CtlError(_error_text(e.code, e.read())) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise CtlError(f"cannot reach {self.url}: {reason}") from None
        if kind.startswith("application/json"):
            return (json.loads(raw) if raw else None), kind
        return raw.decode("utf-8", "replace"), kind


def _error_text(status: int, raw: bytes) -> str:
    try:
        error = json.loads(raw)["error"]
        return f"{status}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {status}"


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows as an aligned text table with a header line."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(_cell(v) for v in value)
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _registrations(rows: list[dict[str, Any]]) -> str:
    flat = [dict(r, flow=f"{r['flow']['transport']} {r['flow']['host']}:{r['flow']['port']}")
            for r in rows]
    return table(flat, ["aor", "contact", "flow", "expires", "user_agent"])


def _calls(rows: list[dict[str, Any]]) -> str:
    flat = [dict(r, legs=len(r.get("legs", []))) for r in rows]
    return table(flat, ["id", "caller", "destination", "state", "duration", "codecs", "legs"])


FORMATS: dict[str, Callable[[Any], str]] = {
    "registrations": _registrations,
    "calls": _calls,
    "bans": lambda rows: table(rows, ["address", "expires", "until", "reason"]),
    "extensions": lambda rows: table(rows, ["number", "name", "context", "source"]),
    "cdr": lambda page: table(page["records"], ["start", "source", "destination",
                                                "disposition", "billsec", "hangup_cause"]),
}


def parser() -> argparse.ArgumentParser:
    """The argument parser (``pbxctl --help``)."""
    p = argparse.ArgumentParser(
        prog="pbxctl", description="Control a running pbxd through its admin API.",
        epilog="Asterisk style: pbxctl -rx \"core show channels\". Token: --token, "
               "--token-file, $PBXCTL_TOKEN or $PBXCTL_TOKEN_FILE.")
    p.add_argument("--url", default=os.environ.get("PBXCTL_URL", DEFAULT_URL),
                   help=f"admin API base URL (default $PBXCTL_URL or {DEFAULT_URL})")
    p.add_argument("--token", help="bearer token (default $PBXCTL_TOKEN)")
    p.add_argument("--token-file", help="read the token from this file")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an answer")
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("health", help="is the server up")
    r = sub.add_parser("registrations", help="list registrations")
    r.add_argument("aor", nargs="?", help="only this extension")
    sub.add_parser("calls", help="list calls in progress")
    h = sub.add_parser("hangup", help="hang up a call")
    h.add_argument("id", help="call id (from 'calls')")
    o = sub.add_parser("originate", help="ring extension A; when it answers, dial B")
    o.add_argument("a")
    o.add_argument("b")
    o.add_argument("--ring-timeout", type=float, help="seconds A may ring (default 30)")
    sub.add_parser("bans", help="list banned addresses")
    b = sub.add_parser("ban", help="ban an address")
    b.add_argument("ip")
    b.add_argument("--seconds", type=float, help="ban duration (default 3600)")
    b.add_argument("--reason")
    u = sub.add_parser("unban", help="lift a ban")
    u.add_argument("ip")
    sub.add_parser("extensions", help="list extensions")
    sub.add_parser("reload", help="re-read the configuration file and certificates")
    c = sub.add_parser("cdr", help="call detail records")
    c.add_argument("--since", help="ISO 8601 or epoch seconds")
    c.add_argument("--until", help="ISO 8601 or epoch seconds")
    c.add_argument("--src", help="calling number")
    c.add_argument("--dst", help="called number")
    c.add_argument("--limit", type=int, help="records per page (default 100)")
    c.add_argument("--csv", action="store_true", help="CSV output")
    return p


def expand_rx(argv: Sequence[str]) -> list[str]:
    """``-rx "cmd args"`` / ``-x "cmd"`` (``-r`` alone is accepted and ignored) -> argv.

    The command's words (Asterisk phrases mapped to pbxctl commands) go after the other
    arguments, so ``pbxctl -rx "calls" --url URL`` works too."""
    out: list[str] = []
    command: list[str] = []  # the -rx words go last, after the global options
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-rx", "-x") and i + 1 < len(args):
            words = shlex.split(args[i + 1])
            for phrase, replacement in ASTERISK_ALIASES.items():
                if tuple(w.lower() for w in words[:len(phrase)]) == phrase:
                    words = replacement + words[len(phrase):]
                    break
            command += words
            i += 2
            continue
        if arg != "-r":
            out.append(arg)
        i += 1
    return out + command


def _token(args: argparse.Namespace) -> str | None:
    if args.token:
        return args.token
    path = args.token_file or (None if os.environ.get("PBXCTL_TOKEN")
                               else os.environ.get("PBXCTL_TOKEN_FILE"))
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                return f.read().strip()
        except OSError as e:
            raise CtlError(f"cannot read the token file {path}: {e.strerror}") from None
    return os.environ.get("PBXCTL_TOKEN")


def run(args: argparse.Namespace, client: Client) -> Any:
    """Perform the command; the value to print (str, or JSON-able)."""
    q = urllib.parse.quote
    cmd = args.command
    if cmd == "health":
        return client.request("GET", "/health")[0]
    if cmd == "registrations":
        return client.request("GET", "/registrations", query={"aor": args.aor})[0]
    if cmd in ("calls", "bans", "extensions"):
        return client.request("GET", f"/{cmd}")[0]
    if cmd == "hangup":
        return client.request("DELETE", f"/calls/{q(args.id, safe='')}")[0]
    if cmd == "originate":
        body: dict[str, Any] = {"from": args.a, "to": args.b}
        if args.ring_timeout is not None:
            body["timeout"] = args.ring_timeout
        return client.request("POST", "/calls", body)[0]
    if cmd == "ban":
        body = {"address": args.ip}
        if args.seconds is not None:
            body["seconds"] = args.seconds
        if args.reason:
            body["reason"] = args.reason
        return client.request("POST", "/bans", body)[0]
    if cmd == "unban":
        return client.request("DELETE", f"/bans/{q(args.ip, safe='')}")[0]
    if cmd == "reload":
        return client.request("POST", "/reload")[0]
    if cmd == "cdr":
        query = {"since": args.since, "until": args.until, "src": args.src, "dst": args.dst,
                 "limit": args.limit, "format": "csv" if args.csv else None}
        return client.request("GET", "/cdr", query=query)[0]
    raise CtlError(f"unknown command {cmd}")  # pragma: no cover (argparse refuses it)


def render(command: str, result: Any, as_json: bool) -> str:
    """What to print for ``result`` of ``command``."""
    if isinstance(result, str):
        return result.rstrip("\n")
    if as_json or command not in FORMATS:
        return json.dumps(result, indent=2, ensure_ascii=False)
    return FORMATS[command](result)


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None,
         err: TextIO | None = None, opener: Callable[..., Any] | None = None) -> int:
    """The ``pbxctl`` entry point; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    args = parser().parse_args(expand_rx(sys.argv[1:] if argv is None else argv))
    try:
        client = Client(args.url, _token(args), args.timeout,
                        **({"opener": opener} if opener else {}))
        result = run(args, client)
    except CtlError as e:
        print(f"pbxctl: {e}", file=err)
        return 1
    print(render(args.command, result, args.json), file=out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
