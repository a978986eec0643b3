"""pbxd.store.cdr: the column values of a CDR row (the JSON columns in particular)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from pbxd.store.cdr import CDR_FIELDS, _row_values

BASE = {"call_id": "c1", "start": 10.0, "answer": 11.0, "end": 15.5, "disposition": "ANSWERED",
        "source": "1000", "destination": "1001", "hangup_cause": "normal",
        "hangup_side": "caller"}


def columns(record: dict) -> dict:
    values = _row_values(record)
    return dict(zip((*CDR_FIELDS, "extra"), values, strict=True))


def test_plain_columns_and_computed_durations() -> None:
    row = columns(BASE)
    assert [row[name] for name in CDR_FIELDS[:11]] == [
        "c1", 10.0, 11.0, 15.5, 5.5, 4.5, "1000", "1001", "ANSWERED", "normal", "caller"]


def test_json_columns_are_what_json_dumps_writes() -> None:
    media = {"a": {"packets_in": 3, "jitter_ms": 0.25}, "b1": {"lost": -1}}
    extra = {"pbx_call_id": "0001", "answered_by": None, "when": Decimal("1.5")}
    for codecs in (["PCMU", "telephone-event"], ["PCMU", "telephone-event"], ("PCMA",), [1]):
        row = columns({**BASE, "codecs": codecs, "media": media, **extra})
        assert row["codecs"] == json.dumps(codecs)
        assert row["media"] == json.dumps(media)
        assert row["extra"] == json.dumps(extra, default=str)


def test_missing_json_columns_get_their_empty_value() -> None:
    row = columns({**BASE, "codecs": None})
    assert (row["codecs"], row["media"], row["extra"]) == ("[]", "{}", "{}")


def test_a_codec_list_that_json_cannot_encode_is_refused() -> None:
    with pytest.raises(TypeError):
        _row_values({**BASE, "codecs": [object()]})
