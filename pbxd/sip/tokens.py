"""Random tokens for SIP: tags, branches, Call-IDs, nonce-free identifiers (layer 1).

:func:`random_hex` hands out hex digits of the OS CSPRNG (``os.urandom``, as
``secrets`` does) drawn a kilobyte at a time: a call needs a dozen tags, branches
and ids, and one system call per token was a visible part of its CPU time. Each
digit is handed out once; a forked child starts a fresh pool. Reactor thread only.
"""

from __future__ import annotations

import os

_POOL_BYTES = 1024
_pool = ""
_pos = 0


def random_hex(chars: int) -> str:
    """``chars`` hex digits from the OS CSPRNG (``os.urandom``, like ``secrets``).

    The bytes are drawn a kilobyte at a time and each digit is handed out once:
    a call needs a dozen tags, branches and ids, and one system call per token
    was a visible part of its CPU time."""
    global _pool, _pos
    end = _pos + chars
    if end > len(_pool):
        _pool, _pos, end = os.urandom(_POOL_BYTES).hex(), 0, chars
    out = _pool[_pos:end]
    _pos = end
    return out


def _forget_pool() -> None:
    global _pool, _pos
    _pool, _pos = "", 0


os.register_at_fork(after_in_child=_forget_pool)  # a child never reuses its parent's digits


def random_below(n: int) -> int:
    """A random int in ``[0, n)`` for ``n`` up to 2**32 (as ``secrets.randbelow``)."""
    if n & (n - 1) == 0:  # a power of two: the bits as they come
        return int(random_hex(8), 16) & (n - 1)
    limit = (1 << 32) - (1 << 32) % n
    while True:
        value = int(random_hex(8), 16)
        if value < limit:
            return value % n
