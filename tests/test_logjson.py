"""twistd --logger=pbxd.logjson.observer: one JSON object per line with the event's fields."""

from __future__ import annotations

import io
import json

from twisted.logger import ILogObserver, Logger, LogPublisher

from pbxd import logjson


def test_events_become_json_lines_with_fields_and_text():
    out = io.StringIO()
    log = Logger(namespace="pbxd.calls", observer=LogPublisher(logjson.json_observer(out)))
    log.info("call {call}: answered by {leg}", call="3a0000001", leg="3a0000001-b1")
    log.warn("{txn} no ACK", txn="s17")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["call"] == "3a0000001" and first["text"] == "call 3a0000001: answered by 3a0000001-b1"
    assert first["log_level"]["name"] == "info" and first["log_namespace"] == "pbxd.calls"
    assert second["txn"] == "s17" and second["log_level"]["name"] == "warn"


def test_twistd_logger_factory_writes_to_the_file_named_in_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "pbxd.jsonl"
    monkeypatch.setenv("PBXD_LOG_JSON", str(path))
    observer = logjson.observer()
    assert ILogObserver.providedBy(observer)
    Logger(observer=observer).info("REGISTER {aor}", aor="1000")
    observer.inner._outFile.close()
    (event,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert event["aor"] == "1000" and event["text"] == "REGISTER 1000"
