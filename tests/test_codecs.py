"""G.711 µ-law / A-law (bit-exact against sox) and the codec registry."""

from __future__ import annotations

import shutil
import subprocess
import wave

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pbxd.rtp.codecs import (
    CODECS,
    Codec,
    alaw_decode,
    alaw_encode,
    codec_for_name,
    codec_for_payload_type,
    register,
    ulaw_decode,
    ulaw_encode,
)

ALL_INT16 = np.arange(65536, dtype=np.uint16).view(np.int16)
ALL_CODES = bytes(range(256))

needs_sox = pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed")


def _sox_encode(tmp_path, samples: np.ndarray, encoding: str) -> bytes:
    src, out = tmp_path / "in.wav", tmp_path / "out.raw"
    with wave.open(str(src), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(samples.astype("<i2").tobytes())
    # -D: no dither, so sox is deterministic
    subprocess.run(["sox", "-D", str(src), "-t", "raw", "-e", encoding, str(out)], check=True)
    return out.read_bytes()


def _sox_decode(tmp_path, codes: bytes, encoding: str) -> np.ndarray:
    src, out = tmp_path / "in.raw", tmp_path / "out.raw"
    src.write_bytes(codes)
    subprocess.run(
        ["sox", "-t", "raw", "-r", "8000", "-c", "1", "-e", encoding, str(src)]
        + ["-t", "raw", "-e", "signed", "-b", "16", "-L", str(out)],
        check=True,
    )
    return np.frombuffer(out.read_bytes(), dtype="<i2")


@needs_sox
@pytest.mark.parametrize(("encoding", "encode"), [("u-law", ulaw_encode), ("a-law", alaw_encode)])
def test_encoding_every_16_bit_sample_matches_sox(tmp_path, encoding, encode):
    assert encode(ALL_INT16) == _sox_encode(tmp_path, ALL_INT16, encoding)


@needs_sox
@pytest.mark.parametrize(("encoding", "decode"), [("u-law", ulaw_decode), ("a-law", alaw_decode)])
def test_decoding_every_code_matches_sox(tmp_path, encoding, decode):
    assert np.array_equal(decode(ALL_CODES), _sox_decode(tmp_path, ALL_CODES, encoding))


def test_known_g711_code_points():
    # G.711: digital silence, and the full-scale codes
    assert ulaw_encode(np.array([0, 32767, -32768], dtype=np.int16)) == b"\xff\x80\x00"
    assert alaw_encode(np.array([0, 32767, -32768], dtype=np.int16)) == b"\xd5\xaa\x2a"
    assert ulaw_decode(b"\xff\x7f\x80\x00").tolist() == [0, 0, 32124, -32124]
    assert alaw_decode(b"\xd5\x55\xaa\x2a").tolist() == [8, -8, 32256, -32256]


@pytest.mark.parametrize(
    ("encode", "decode"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)]
)
def test_decode_then_encode_is_identity_on_codes(encode, decode):
    codes = ALL_CODES
    if encode is ulaw_encode:  # 0x7f is µ-law's negative zero, re-encoded as 0xff
        codes = bytes(c for c in ALL_CODES if c != 0x7F)
    assert encode(decode(codes)) == codes


@pytest.mark.parametrize(
    ("encode", "decode"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)]
)
def test_encoding_is_monotonic_in_the_decoded_domain(encode, decode):
    round_trip = decode(encode(ALL_INT16)).astype(np.int32)
    order = np.argsort(ALL_INT16, kind="stable")
    assert np.all(np.diff(round_trip[order]) >= 0)


@given(arrays(np.int16, st.integers(0, 400)))
def test_round_trip_error_is_bounded_by_the_segment_step(samples):
    for encode, decode in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        restored = decode(encode(samples)).astype(np.int32)
        error = np.abs(restored - samples.astype(np.int32))
        # G.711 is logarithmic: the error stays within about 1/16 of the magnitude (3%),
        # and within 16 near zero
        assert np.all(error <= np.maximum(np.abs(samples.astype(np.int32)) // 16, 16))


def test_encode_accepts_python_lists_and_decode_returns_int16():
    assert ulaw_encode([0, 0]) == b"\xff\xff"
    assert alaw_decode(b"\xd5").dtype == np.int16


def test_registry_finds_codecs_by_name_and_static_payload_type():
    assert set(CODECS) >= {"PCMU", "PCMA"}
    pcmu = codec_for_name("pcmu")
    assert pcmu is CODECS["PCMU"]
    assert (pcmu.clock_rate, pcmu.payload_type) == (8000, 0)
    assert codec_for_payload_type(8) is CODECS["PCMA"]
    assert codec_for_payload_type(18) is None
    assert codec_for_name("PCMU", 16000) is None
    assert codec_for_name("opus") is None
    assert pcmu.samples_per_packet(20) == 160
    assert pcmu.decode(pcmu.silence).tolist() == [0]
    assert CODECS["PCMA"].decode(CODECS["PCMA"].silence).tolist() == [8]


def test_registering_a_codec_makes_it_findable():
    def identity_encode(samples):
        return np.asarray(samples, dtype="<i2").tobytes()

    def identity_decode(data):
        return np.frombuffer(data, dtype="<i2").astype(np.int16)

    l16 = Codec("L16-test", 8000, None, identity_encode, identity_decode)
    try:
        register(l16)
        assert codec_for_name("l16-test") is l16
        assert l16.decode(l16.encode(np.array([1, -2], dtype=np.int16))).tolist() == [1, -2]
    finally:
        CODECS.pop("L16-TEST")
