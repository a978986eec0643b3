"""pbxd.sip.tokens: pooled CSPRNG digits for tags, branches and ids."""

from __future__ import annotations

import os

from pbxd.sip import tokens
from pbxd.sip.controller import new_tag
from pbxd.sip.transaction.common import MAGIC_COOKIE, new_branch


def test_random_hex_hands_out_each_digit_once_across_pool_refills():
    seen = [tokens.random_hex(12) for _ in range(1000)]  # 12,000 digits: several pools
    assert all(len(t) == 12 and int(t, 16) >= 0 for t in seen)
    assert len(set(seen)) == len(seen)


def test_tags_and_branches_carry_48_and_64_random_bits():
    assert len(new_tag()) == 12
    branch = new_branch()
    assert branch.startswith(MAGIC_COOKIE) and len(branch) == len(MAGIC_COOKIE) + 16


def test_random_below_stays_in_range_for_powers_of_two_and_others():
    for n in (1, 2, 7, 1000, 2**20, 2**31):
        assert all(0 <= tokens.random_below(n) < n for _ in range(200))
    assert {tokens.random_below(3) for _ in range(300)} == {0, 1, 2}


def test_a_forked_child_does_not_reuse_the_parents_digits():
    tokens.random_hex(4)  # make sure the parent has a pool
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(write, tokens.random_hex(32).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 32 and child != tokens.random_hex(32)
