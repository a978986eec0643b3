"""/recordings in the admin API: list (newest first, by call), WAV download, audited delete,
409 while a call is being recorded (real RecordingStore, in-memory site)."""

from __future__ import annotations

import os

from webhelpers import NOW, Env


def test_list_newest_first_and_filtered_by_call():
    env = Env()
    first = env.add_recording("00a00001", NOW, seconds=0.5)
    second = env.add_recording("00a00002", NOW + 90, seconds=2.0)
    listed = env.call("GET", "/api/v1/recordings").json["recordings"]
    assert [r["id"] for r in listed] == [second, first]
    assert listed[1] == {"id": first, "call_id": "00a00001", "caller": "1000",
                         "callee": "2000", "start": "2023-11-14T22:13:20.000Z", "seconds": 0.5,
                         "channels": 1, "size": 44 + 8000, "recording": False}
    only = env.call("GET", "/api/v1/recordings", params={"call_id": "00a00002"}).json
    assert [r["id"] for r in only["recordings"]] == [second]


def test_download_serves_the_wav_file():
    env = Env()
    rec_id = env.add_recording(seconds=0.25)
    reply = env.call("GET", f"/api/v1/recordings/{rec_id}")
    assert reply.status == 200 and reply.header("content-type") == "audio/wav"
    with open(os.path.join(env.recordings.folder, f"{rec_id}.wav"), "rb") as f:
        assert reply.raw == f.read()
    assert f'filename="{rec_id}.wav"' in reply.header("content-disposition")


def test_delete_is_audited_and_refused_while_recording():
    env = Env()
    done = env.add_recording("00a00001")
    running = env.add_recording("00a00002", NOW + 5, finished=False)
    reply = env.call("DELETE", f"/api/v1/recordings/{done}")
    assert reply.status == 200 and reply.json["id"] == done
    entry = env.audit_entries()[-1]
    assert (entry["action"], entry["target"], entry["who"]) == ("recording.delete", done, "ops")
    assert env.call("GET", f"/api/v1/recordings/{done}").status == 404
    assert env.call("DELETE", f"/api/v1/recordings/{done}").status == 404
    busy = env.call("DELETE", f"/api/v1/recordings/{running}")
    assert busy.status == 409 and busy.json["error"]["code"] == "in_progress"
    assert [r["id"] for r in env.call("GET", "/api/v1/recordings").json["recordings"]] == \
        [running]


def test_unknown_or_malformed_ids_are_404_and_a_token_is_needed():
    env = Env()
    env.add_recording()
    for path in ("/api/v1/recordings/nope", "/api/v1/recordings/..%2F..%2Fetc%2Fpasswd",
                 "/api/v1/recordings/20231114-221320-x%2F..%2F.."):
        assert env.call("GET", path).status == 404, path
    assert env.call("GET", "/api/v1/recordings", token=None).status == 401
