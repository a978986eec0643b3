"""${...} substitution and Asterisk substrings."""

from __future__ import annotations

import pytest

from pbxd.dialplan.variables import check_template, substitute, substring

VARS = {"EXTEN": "0612345678", "CALLERID(num)": "1001", "EMPTY": ""}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("${EXTEN}", "0612345678"),
        ("${EXTEN:1}", "612345678"),
        ("${EXTEN:-4}", "5678"),
        ("${EXTEN:1:3}", "612"),
        ("${EXTEN:0:-1}", "061234567"),
        ("${EXTEN:-4:2}", "56"),
        ("${EXTEN:20}", ""),
        ("${EXTEN:-20}", "0612345678"),
        ("sip:${EXTEN:1}@gw", "sip:612345678@gw"),
        ("${CALLERID(num)}-${EXTEN:-2}", "1001-78"),
        ("${UNSET}x", "x"),
        ("${EMPTY}", ""),
        ("no variables", "no variables"),
    ],
)
def test_substitute_strings(template, expected):
    assert substitute(template, VARS) == expected


def test_substitute_goes_into_lists_and_mappings_but_not_keys_or_numbers():
    args = {"to": ["${EXTEN:-4}", "9${EXTEN}"], "timeout": 20, "${EXTEN}": "k"}
    assert substitute(args, VARS) == {"to": ["5678", "90612345678"], "timeout": 20,
                                      "${EXTEN}": "k"}


def test_substitute_takes_a_lookup_function():
    assert substitute("${A}${B}", lambda name: {"A": "1"}.get(name)) == "1"


def test_substring_negative_length_counts_from_the_end():
    assert substring("abcdef", 1, -2) == "bcd"
    assert substring("abc", 0, -5) == ""


@pytest.mark.parametrize("bad", ["${EXTEN", "${EX TEN}", "${EXTEN:a}", {"x": ["${}"]}])
def test_check_template_finds_malformed_references(bad):
    assert check_template(bad) is not None


def test_check_template_accepts_well_formed_references():
    assert check_template({"to": ["${EXTEN:1:2}", "${CALLERID(name)}"], "n": 3}) is None
