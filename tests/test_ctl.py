"""pbxctl: argument parsing, -rx aliases, requests it builds, output and errors (no sockets)."""

from __future__ import annotations

import io
import json
import urllib.error

import pytest

from pbxd import ctl


class FakeResponse(io.BytesIO):
    def __init__(self, body: bytes, content_type: str = "application/json") -> None:
        super().__init__(body)
        self.headers = {"Content-Type": content_type}


class Server:
    """Stands in for urlopen: records requests, answers from a table (path -> (status, body))."""

    def __init__(self, answers: dict[str, tuple[int, object]]) -> None:
        self.answers = answers
        self.requests: list = []

    def __call__(self, request, timeout=None):
        self.requests.append(request)
        path = request.full_url.split("/api/v1", 1)[1].split("?")[0]
        status, body = self.answers.get(f"{request.get_method()} {path}", (404, {
            "error": {"code": "not_found", "message": "no such resource"}}))
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        kind = "text/csv" if isinstance(body, str) else "application/json"
        if status >= 400:
            raise urllib.error.HTTPError(request.full_url, status, "x", {}, io.BytesIO(raw))
        return FakeResponse(raw, kind)


def run(argv, server):
    out, err = io.StringIO(), io.StringIO()
    code = ctl.main(argv, out=out, err=err, opener=server)
    return code, out.getvalue(), err.getvalue()


CALL = {"id": "3a0000001", "caller": "1000", "destination": "1001", "state": "ANSWERED",
        "duration": 12.25, "codecs": ["PCMU"], "legs": [{}, {}], "media": {}}


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        ctl.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for command in ("registrations", "calls", "hangup", "originate", "bans", "ban", "unban",
                    "reload", "cdr"):
        assert command in text


@pytest.mark.parametrize(("argv", "expected"), [
    (["-rx", "core show channels"], ["calls"]),
    (["-r", "-x", "sip show peers"], ["registrations"]),
    (["-rx", "channel request hangup 3a0000001"], ["hangup", "3a0000001"]),
    (["-rx", "core reload", "--url", "http://h:1"], ["--url", "http://h:1", "reload"]),
    (["-rx", "cdr --src 1000 --csv"], ["cdr", "--src", "1000", "--csv"]),
    (["calls"], ["calls"]),
])
def test_rx_is_an_alias_for_the_command_words(argv, expected):
    assert ctl.expand_rx(argv) == expected


def test_calls_prints_a_table_with_the_token_sent(monkeypatch):
    monkeypatch.setenv("PBXCTL_TOKEN", "env-token")
    server = Server({"GET /calls": (200, [CALL])})
    code, out, _ = run(["--url", "http://pbx:8080/", "calls"], server)
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["ID", "CALLER", "DESTINATION", "STATE", "DURATION", "CODECS",
                              "LEGS"]
    assert row.split() == ["3a0000001", "1000", "1001", "ANSWERED", "12.2", "PCMU", "2"]
    (request,) = server.requests
    assert request.full_url == "http://pbx:8080/api/v1/calls"
    assert request.get_header("Authorization") == "Bearer env-token"


def test_token_option_beats_token_file_beats_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PBXCTL_TOKEN", "env-token")
    token_file = tmp_path / "token"
    token_file.write_text("file-token\n")
    server = Server({"GET /bans": (200, [])})
    run(["--token-file", str(token_file), "bans"], server)
    run(["--token", "cli-token", "--token-file", str(token_file), "bans"], server)
    assert [r.get_header("Authorization") for r in server.requests] == [
        "Bearer file-token", "Bearer cli-token"]


def test_originate_and_ban_send_json_bodies():
    server = Server({"POST /calls": (201, {"id": "x1", "from": "1000", "to": "1001"}),
                     "POST /bans": (201, {"address": "203.0.113.5"})})
    assert run(["originate", "1000", "1001", "--ring-timeout", "15"], server)[0] == 0
    assert run(["ban", "203.0.113.5", "--seconds", "60", "--reason", "scan"], server)[0] == 0
    bodies = [json.loads(r.data) for r in server.requests]
    assert bodies == [{"from": "1000", "to": "1001", "timeout": 15.0},
                      {"address": "203.0.113.5", "seconds": 60.0, "reason": "scan"}]
    assert server.requests[0].get_header("Content-type") == "application/json"


def test_hangup_and_unban_use_delete_on_the_escaped_id():
    server = Server({"DELETE /calls/3a0000001": (200, CALL),
                     "DELETE /bans/2001%3Adb8%3A%3A1": (200, {"address": "2001:db8::1"})})
    assert run(["hangup", "3a0000001"], server)[0] == 0
    assert run(["unban", "2001:db8::1"], server)[0] == 0
    assert [r.get_method() for r in server.requests] == ["DELETE", "DELETE"]
    assert server.requests[1].full_url.endswith("/api/v1/bans/2001%3Adb8%3A%3A1")


def test_cdr_passes_filters_and_prints_csv_as_is():
    csv_text = "call_id,source\nc1,1000\n"
    server = Server({"GET /cdr": (200, csv_text)})
    code, out, _ = run(["cdr", "--since", "2024-05-01", "--src", "1000", "--csv"], server)
    assert code == 0 and out == csv_text
    assert server.requests[0].full_url.endswith(
        "/api/v1/cdr?since=2024-05-01&src=1000&format=csv")


def test_api_error_is_printed_with_its_message_and_exit_status_1():
    server = Server({"POST /reload": (409, {"error": {
        "code": "invalid_config", "message": "config.yml: sip.listen[0]: bad port"}})})
    code, out, err = run(["reload"], server)
    assert code == 1 and out == ""
    assert err.strip() == "pbxctl: 409: config.yml: sip.listen[0]: bad port"


def test_unreachable_server_is_one_line(monkeypatch):
    def refuse(request, timeout=None):
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    code, _, err = run(["--url", "http://127.0.0.1:9", "health"], refuse)
    assert code == 1 and err.startswith("pbxctl: cannot reach http://127.0.0.1:9")


def test_json_flag_prints_the_api_answer():
    server = Server({"GET /registrations": (200, [])})
    code, out, _ = run(["--json", "registrations", "1000"], server)
    assert code == 0 and json.loads(out) == []
    assert server.requests[0].full_url.endswith("/registrations?aor=1000")
