"""Match expressions: Asterisk pattern semantics, regexes, and rule precedence."""

from __future__ import annotations

import pytest

from pbxd.dialplan.patterns import PatternError, compile_match

MATCHES = [
    # (pattern, number, matches?)
    ("1000", "1000", True),
    ("1000", "10000", False),
    ("*43", "*43", True),
    ("_XXXX", "0123", True),
    ("_XXXX", "123", False),
    ("_XXXX", "12a4", False),
    ("_ZXX", "099", False),
    ("_ZXX", "199", True),
    ("_NXX", "199", False),
    ("_NXX", "299", True),
    ("_nxx", "299", True),  # X Z N in either case
    ("_[1-5]XX", "599", True),
    ("_[1-5]XX", "699", False),
    ("_[137]X", "34", True),
    ("_[137]X", "24", False),
    ("_[1-35]X", "54", True),
    ("_[1-35]X", "44", False),
    ("_9.", "9", False),  # '.' is one or more
    ("_9.", "91", True),
    ("_9.", "9123456", True),
    ("_9!", "9", True),  # '!' is zero or more
    ("_9!", "9123", True),
    ("_*X.", "*72123", True),
    ("_1-800-NXX", "1800234", True),  # dashes are ignored
    ("re:^(alice|bob)$", "alice", True),
    ("re:\\d{3}", "1234", False),  # a regex must match the whole number
    ("re:\\d{3}", "123", True),
]


@pytest.mark.parametrize(("pattern", "number", "expected"), MATCHES)
def test_match_table(pattern, number, expected):
    assert compile_match(pattern).matches(number) is expected


@pytest.mark.parametrize("bad", ["", "_", "_[12", "_12]", "_[]X", "_[5-1]", "re:", "re:(a",
                                 "_1 2", "10 00"])
def test_bad_expressions_are_refused(bad):
    with pytest.raises(PatternError):
        compile_match(bad)


def _order(*patterns: str) -> list[str]:
    compiled = [compile_match(p) for p in patterns]
    return [p.text for p in sorted(compiled, key=lambda p: p.sort_key())]


@pytest.mark.parametrize(
    ("shuffled", "expected"),
    [
        (("_XXXX", "1234"), ["1234", "_XXXX"]),  # exact beats any pattern
        (("_XXX", "_1XX", "_12X"), ["_12X", "_1XX", "_XXX"]),
        (("_XXX", "_ZXX", "_NXX", "_[2-4]XX"), ["_[2-4]XX", "_NXX", "_ZXX", "_XXX"]),
        (("_1.", "_1XXX"), ["_1XXX", "_1."]),
        (("_1!", "_1."), ["_1.", "_1!"]),
        (("re:1\\d\\d\\d", "_X."), ["_X.", "re:1\\d\\d\\d"]),  # regexes after patterns
        (("re:b", "re:a"), ["re:b", "re:a"]),  # regexes keep file order
    ],
)
def test_precedence_most_specific_first(shuffled, expected):
    assert _order(*shuffled) == expected
