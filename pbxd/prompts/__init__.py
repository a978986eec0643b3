"""The spoken prompts that ship with pbxd, and how a prompt name becomes audio (pure, stdlib).

The ``*.wav`` files beside this module are 8 kHz mono 16-bit PCM, made once
with espeak-ng and sox by ``scripts/make-prompts``. Applications name them
without the extension (``"goodbye"``, ``"digit-7"``); the media side turns a
name into a file with :func:`resolve_prompt` and into PCM with
:func:`read_wav`. Call-progress tones (``tone:ringback``, ``tone:busy``,
``tone:beep``) are not files: the media side makes them in code.
"""

from __future__ import annotations

import os
import re
import wave
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "PROMPT_DIR",
    "TONES",
    "WavAudio",
    "is_tone",
    "prompt_names",
    "read_wav",
    "resolve_prompt",
]

PROMPT_DIR = os.path.dirname(os.path.abspath(__file__))
TONES = ("ringback", "busy", "beep", "silence")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def prompt_names() -> list[str]:
    """The names of the prompts shipped with pbxd, sorted."""
    return sorted(f[:-4] for f in os.listdir(PROMPT_DIR) if f.endswith(".wav"))


def is_tone(prompt: str) -> bool:
    """True for ``tone:<name>`` with a known tone name (made in code, not read from a file)."""
    return prompt.startswith("tone:") and prompt[5:] in TONES


def resolve_prompt(prompt: str, search_dirs: Iterable[str] = ()) -> str:
    """The WAV file for ``prompt``: a prompt name or a path.

    A value containing a path separator or ending in ``.wav`` is a path and is
    returned (made absolute) if the file exists. Otherwise it is a name looked
    up as ``<name>.wav`` in each of ``search_dirs`` (e.g. a voicemail greeting
    directory) and then among pbxd's own prompts. Raises ``FileNotFoundError``
    naming the prompt when there is no such file, ``ValueError`` for a name
    that could escape its directory.
    """
    if os.sep in prompt or "/" in prompt or prompt.lower().endswith(".wav"):
        path = os.path.abspath(prompt)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no such WAV file: {prompt}")
        return path
    if not _NAME.fullmatch(prompt):
        raise ValueError(f"{prompt!r} is not a prompt name")
    for directory in (*search_dirs, PROMPT_DIR):
        path = os.path.join(directory, prompt + ".wav")
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"unknown prompt {prompt!r}")


@dataclass(frozen=True, slots=True)
class WavAudio:
    """Audio read from a WAV file: 16-bit little-endian mono PCM at ``rate``."""

    rate: int
    pcm: bytes

    @property
    def seconds(self) -> float:
        """The duration."""
        return len(self.pcm) / 2 / self.rate


def read_wav(path: str, rate: int | None = 8000) -> WavAudio:
    """Read a 16-bit mono PCM WAV file.

    ``rate`` is the sample rate required (8000 by default, what G.711 carries);
    ``None`` accepts any. Raises ``ValueError`` naming the file for anything
    else (stereo, 8-bit, compressed, another rate), ``OSError`` if unreadable.
    """
    try:
        with wave.open(path, "rb") as w:
            channels, width, file_rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            if channels != 1 or width != 2:
                raise ValueError(f"{path}: need mono 16-bit PCM, got {channels} channel(s)"
                                 f" of {width * 8}-bit")
            if rate is not None and file_rate != rate:
                raise ValueError(f"{path}: need {rate} Hz, got {file_rate} Hz"
                                 f" (sox in.wav -r {rate} -c 1 -b 16 out.wav)")
            return WavAudio(file_rate, w.readframes(w.getnframes()))
    except wave.Error as exc:
        raise ValueError(f"{path}: not a PCM WAV file ({exc})") from None
