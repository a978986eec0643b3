"""The ``limits:`` section: defaults, validation naming the key, the sip.max_message_size alias."""

from __future__ import annotations

import pytest

from pbxd.config import ConfigError, parse_config
from pbxd.configschema import LimitsConfig, OverloadConfig


def test_defaults_are_safe_and_complete() -> None:
    limits = parse_config({}).limits
    assert limits == LimitsConfig()
    assert limits.max_message_size == 65535
    assert limits.max_headers == 256 and limits.max_header_length == 8192
    assert limits.max_connections == 4096 and limits.max_connections_per_source == 64
    assert limits.idle_timeout == 600 and limits.incomplete_timeout == 10
    assert limits.max_transactions_per_source == 1000 and limits.max_dialogs_per_source == 200
    assert limits.max_outstanding_nonces == 16384
    assert limits.overload == OverloadConfig(max_loop_lag=0.5, max_call_rate=100.0, retry_after=5)


def test_every_key_can_be_set() -> None:
    limits = parse_config({"limits": {
        "max_message_size": 4096, "max_headers": 32, "max_header_length": 1024,
        "max_connections": 10, "max_connections_per_source": 2, "idle_timeout": "2m",
        "incomplete_timeout": 3, "max_transactions_per_source": 50, "max_dialogs_per_source": 5,
        "max_outstanding_nonces": 100,
        "overload": {"max_loop_lag": "250ms", "max_call_rate": 12.5, "retry_after": 30},
    }}).limits
    assert limits == LimitsConfig(4096, 32, 1024, 10, 2, 120.0, 3.0, 50, 5, 100,
                                  OverloadConfig(0.25, 12.5, 30))


def test_overload_checks_can_be_disabled_with_zero() -> None:
    overload = parse_config({"limits": {"overload": {"max_loop_lag": 0, "max_call_rate": 0}}}).limits.overload
    assert overload.max_loop_lag == 0 and overload.max_call_rate == 0


def test_old_sip_max_message_size_still_works() -> None:
    config = parse_config({"sip": {"max_message_size": 4096}})
    assert config.limits.max_message_size == config.sip.max_message_size == 4096
    # the header-length default follows a smaller message size down
    assert config.limits.max_header_length == 4096


def test_new_key_is_mirrored_into_sip_section() -> None:
    config = parse_config({"limits": {"max_message_size": 20000}})
    assert config.sip.max_message_size == 20000


def test_both_spellings_agreeing_is_fine() -> None:
    config = parse_config({"sip": {"max_message_size": 5000}, "limits": {"max_message_size": 5000}})
    assert config.limits.max_message_size == 5000


@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        ({"limits": {"max_message_size": 100}}, "limits.max_message_size", "out of range"),
        ({"limits": {"max_message_size": 2**30}}, "limits.max_message_size", "out of range"),
        ({"sip": {"max_message_size": 5000}, "limits": {"max_message_size": 6000}},
         "sip.max_message_size", "conflicts"),
        ({"limits": {"max_headers": 0}}, "limits.max_headers", "out of range"),
        ({"limits": {"max_headers": "many"}}, "limits.max_headers", "integer"),
        ({"limits": {"max_header_length": 10}}, "limits.max_header_length", "out of range"),
        ({"limits": {"max_message_size": 2048, "max_header_length": 4096}},
         "limits.max_header_length", "above max_message_size"),
        ({"limits": {"max_connections": 0}}, "limits.max_connections", "out of range"),
        ({"limits": {"max_connections": 5, "max_connections_per_source": 6}},
         "limits.max_connections_per_source", "above max_connections"),
        ({"limits": {"idle_timeout": 0}}, "limits.idle_timeout", ""),
        ({"limits": {"incomplete_timeout": -1}}, "limits.incomplete_timeout", ""),
        ({"limits": {"idle_timeout": 5, "incomplete_timeout": 10}},
         "limits.incomplete_timeout", "above idle_timeout"),
        ({"limits": {"max_transactions_per_source": True}}, "limits.max_transactions_per_source", ""),
        ({"limits": {"max_dialogs_per_source": 0}}, "limits.max_dialogs_per_source", "out of range"),
        ({"limits": {"max_outstanding_nonces": 1}}, "limits.max_outstanding_nonces", "out of range"),
        ({"limits": {"overload": {"max_call_rate": -1}}}, "limits.overload.max_call_rate", "calls per second"),
        ({"limits": {"overload": {"max_call_rate": "fast"}}}, "limits.overload.max_call_rate", ""),
        ({"limits": {"overload": {"retry_after": 0}}}, "limits.overload.retry_after", ""),
        ({"limits": {"overload": {"max_loop_lag": -0.5}}}, "limits.overload.max_loop_lag", ""),
        ({"limits": {"overload": {"max_lag": 1}}}, "limits.overload.max_lag", "max_loop_lag"),
        ({"limits": {"max_conections": 1}}, "limits.max_conections", "max_connections"),
        ({"limits": [1, 2]}, "limits", "mapping"),
    ],
)
def test_bad_values_name_their_key(data: dict, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="etc/config.yml")
    assert info.value.key == key
    assert fragment in info.value.message
    assert str(info.value).startswith("etc/config.yml: " + key + ":")
