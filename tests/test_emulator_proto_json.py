"""The emulator's proto3-JSON reader on its own, over small attrs models of every shape.

The core's models will change (typed enums, unions such as a system instruction given as a
string or a Content); the reader is driven by field types, so these tests cover each kind
of type it may meet, not only those the models have today.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import pytest

from gemini_tokens.testing._proto_json import WireError, read, read_int


class Level(str, enum.Enum):
    LEVEL_UNSPECIFIED = "LEVEL_UNSPECIFIED"
    LOW = "LOW"
    HIGH = "HIGH"


@attrs.frozen(kw_only=True)
class Inner:
    count: int | None = None
    flag: bool | None = None


@attrs.frozen(kw_only=True)
class Outer:
    name: str | None = None
    ratio: float | None = None
    level: Level | None = None
    inner: Inner | None = None
    inners: Sequence[Inner] | None = None
    pair: tuple[str, ...] | None = None
    labels: Mapping[str, str] | None = None
    schema: Mapping[str, Any] | None = None
    anything: Any = None
    either: str | Inner | None = None
    number_or_list: int | Sequence[int] | None = None
    trigger_tokens: int | None = None


def test_names_values_and_nulls_are_normalised() -> None:
    raw = {
        "name": "n",
        "ratio": "0.25",
        "level": "LOW",
        "inner": {"count": "7", "flag": False},
        "inners": [{"count": 1.0}, {}],
        "pair": ["a", "b"],
        "labels": {"Some_Key": "kept"},
        "schema": {"properties": {"user_field": {"type": "STRING"}}},
        "anything": [1, {"x": None}],
        "triggerTokens": "9000000000",
        "either": None,
    }
    assert read(raw, Outer, "root") == {
        "name": "n",
        "ratio": 0.25,
        "level": "LOW",
        "inner": {"count": 7, "flag": False},
        "inners": [{"count": 1}, {}],
        "pair": ["a", "b"],
        "labels": {"Some_Key": "kept"},
        "schema": {"properties": {"user_field": {"type": "STRING"}}},
        "anything": [1, {"x": None}],
        "trigger_tokens": 9000000000,
    }


def test_unions_pick_the_member_the_json_kind_fits() -> None:
    assert read({"either": "text"}, Outer, "r") == {"either": "text"}
    assert read({"either": {"count": "2"}}, Outer, "r") == {"either": {"count": 2}}
    assert read({"numberOrList": "3"}, Outer, "r") == {"number_or_list": 3}
    assert read({"numberOrList": [1, "2"]}, Outer, "r") == {"number_or_list": [1, 2]}
    with pytest.raises(WireError) as info:
        read({"either": {"count": "x"}}, Outer, "r")
    assert info.value.field == "r.either.count"
    with pytest.raises(WireError, match="expected"):
        read({"numberOrList": True}, Outer, "r")


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        ({"level": "low"}, "r.level", "expected one of LEVEL_UNSPECIFIED, LOW, HIGH"),
        ({"level": 1}, "r.level", "TYPE_ENUM Level"),  # no numbering known for this enum
        ({"inner": []}, "r.inner", "expected an object, got a list"),
        ({"inners": {}}, "r.inners", "expected a list, got an object"),
        ({"inners": [{"count": None}, 5]}, "r.inners[1]", "expected an object, got a number"),
        ({"labels": []}, "r.labels", "expected an object"),
        ({"labels": {"k": None}}, "r.labels['k']", "got null"),
        ({"name": 5}, "r.name", "(TYPE_STRING), 5: expected a string"),
        ({"ratio": "x" * 100}, "r.ratio", "xxx...: expected a number, got a string"),
        ({"ratio": True}, "r.ratio", "expected a number, got a boolean"),
        ({"inner": {"flag": 1}}, "r.inner.flag", "expected true or false, got a number"),
        ({"inner": {"count": "0x10"}}, "r.inner.count", "expected an integer, got a string"),
        ({"triggerTokens": 2**63}, "r.trigger_tokens", "out of range for int64"),
        ({"inner": {"count": -(2**31) - 1}}, "r.inner.count", "out of range for int32"),
        ({"Name": "n"}, "r", 'Unknown name "Name"'),
        ({"name": "a", "name ": "b"}, "r", 'Unknown name "name "'),
        ({"trigger_tokens": 1, "triggerTokens": 2}, "r.trigger_tokens", "given twice"),
    ],
)
def test_what_the_reader_refuses(raw: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(WireError) as info:
        read(raw, Outer, "r")
    assert info.value.field == field
    assert fragment in info.value.message


def test_long_values_are_shown_short() -> None:
    with pytest.raises(WireError) as info:
        read({"name": list(range(100))}, Outer, "r")
    assert info.value.message.endswith("...: expected a string, got a list")
    assert len(info.value.message) < 160


def test_read_int_bounds() -> None:
    assert read_int("2147483647", "f") == 2**31 - 1
    assert read_int(-(2**31), "f") == -(2**31)
    assert read_int("9223372036854775807", "f", int64=True) == 2**63 - 1
    with pytest.raises(WireError, match="int32"):
        read_int(2**31, "f")
    with pytest.raises(WireError, match="expected an integer"):
        read_int(float("inf"), "f")


def test_the_top_level_has_no_path_prefix() -> None:
    with pytest.raises(WireError) as info:
        read({"inner": {"count": "x"}}, Outer, "")
    assert info.value.field == "inner.count"
