"""/voicemail in the admin API: boxes and counts, messages, WAV download, audited delete
that updates message-waiting listeners (real stores, in-memory site)."""

from __future__ import annotations

from webhelpers import Env


def test_boxes_messages_and_audio():
    env = Env()
    message = env.add_voicemail("1000", "msg-1700000000-0000abcd", seconds=0.5)
    assert env.call("GET", "/api/v1/voicemail").json == {
        "boxes": [{"box": "1000", "new": 1, "old": 0}]}
    box = env.call("GET", "/api/v1/voicemail/1000").json
    assert box["new"] == 1 and box["old"] == 0
    (listed,) = box["messages"]
    assert listed == {"id": "msg-1700000000-0000abcd", "box": "1000", "caller": "2000",
                      "caller_name": "Bob", "time": listed["time"], "duration": 0.5,
                      "folder": "new"}
    assert listed["time"].startswith("2023-11-")
    reply = env.call("GET", "/api/v1/voicemail/1000/msg-1700000000-0000abcd")
    assert reply.status == 200 and reply.header("content-type") == "audio/wav"
    assert reply.raw == open(message["path"], "rb").read() and reply.raw[:4] == b"RIFF"


def test_delete_is_audited_and_tells_listeners():
    env = Env()
    env.add_voicemail("1000", "msg-1700000000-0000abcd")
    heard = []
    env.voicemail.subscribe(lambda box, new, old: heard.append((box, new, old)))
    reply = env.call("DELETE", "/api/v1/voicemail/1000/msg-1700000000-0000abcd")
    assert reply.status == 200 and reply.json["id"] == "msg-1700000000-0000abcd"
    assert heard == [("1000", 0, 0)]
    assert env.call("GET", "/api/v1/voicemail/1000").json["messages"] == []
    assert env.audit_entries()[-1]["action"] == "voicemail.delete"
    again = env.call("DELETE", "/api/v1/voicemail/1000/msg-1700000000-0000abcd")
    assert again.status == 404


def test_unknown_box_or_malformed_ids_are_404():
    env = Env()
    for path in ("/api/v1/voicemail/4711", "/api/v1/voicemail/..%2Fetc",
                 "/api/v1/voicemail/1000/../../etc/passwd", "/api/v1/voicemail/1000/nope"):
        assert env.call("GET", path).status == 404, path
