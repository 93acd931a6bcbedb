"""The per-call memos of `_converters` (issue 6): a hit must be indistinguishable from a miss.

Memoised conversions are keyed by an exact image of the input (types included) and keep only
results that are immutable all the way down; these tests pin both rules, and that the fast
serialisation of the body is byte for byte the slow one.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from typing import Any

import pytest

from gemini_tokens import LiveConnectConfig, LiveConnectConstraints, Modality, ValidationError
from gemini_tokens import _converters as conv
from gemini_tokens._converters import (
    body_bytes,
    body_for,
    setup_from_wire,
    structure_constraints,
    token_from_response,
)
from gemini_tokens._request import build_request

MODEL = "gemini-live-2.5-flash-preview"


def constraints(**config: Any) -> dict[str, Any]:
    return {"model": MODEL, "config": config}


def fresh(value: Any) -> LiveConnectConstraints:
    """What structure_constraints returns without any memo."""
    result: LiveConnectConstraints = conv._converters()[0].structure(value, LiveConnectConstraints)
    return result


def slow_body(request: Any) -> bytes:
    return json.dumps(body_for(request), separators=(",", ":"), allow_nan=False).encode()


@pytest.mark.parametrize(
    ("good", "bad"),
    [
        (1, True),  # equal in Python, but a bool is not a number here
        (0, False),
        (1.0, True),
    ],
)
def test_equal_values_of_other_types_do_not_share_an_entry(good: Any, bad: Any) -> None:
    assert structure_constraints(constraints(temperature=good)).config is not None
    with pytest.raises(ValidationError, match="temperature"):
        structure_constraints(constraints(temperature=bad))


def test_int_and_float_inputs_keep_their_own_type() -> None:
    one = structure_constraints(constraints(temperature=1))
    one_float = structure_constraints(constraints(temperature=1.0))
    assert one.config is not None
    assert one_float.config is not None
    assert type(one.config.temperature) is int
    assert type(one_float.config.temperature) is float


def test_a_dict_changed_between_calls_is_converted_again() -> None:
    options = constraints(response_modalities=["AUDIO"], temperature=0.7)
    first = build_request(live_connect_constraints=options, lock_additional_fields=[])
    options["config"]["temperature"] = 0.2
    options["config"]["response_modalities"].append("TEXT")
    second = build_request(live_connect_constraints=options, lock_additional_fields=[])
    assert json.loads(body_bytes(first))["bidiGenerateContentSetup"]["generationConfig"] == {
        "responseModalities": ["AUDIO"],
        "temperature": 0.7,
    }
    assert json.loads(body_bytes(second))["bidiGenerateContentSetup"]["generationConfig"] == {
        "responseModalities": ["AUDIO", "TEXT"],
        "temperature": 0.2,
    }


@pytest.mark.parametrize(
    "value",
    [
        constraints(response_modalities=["AUDIO"], temperature=0.7),
        constraints(response_modalities=[Modality.AUDIO], speech_config="Kore"),  # an enum
        LiveConnectConstraints(model=MODEL, config=LiveConnectConfig(temperature=0.3)),  # a model
        constraints(system_instruction="Be brief.", session_resumption={}),
    ],
)
def test_a_hit_equals_a_fresh_conversion_and_is_shared(value: Any) -> None:
    first = structure_constraints(value)
    second = structure_constraints(value)
    assert first == second == fresh(value)
    assert second is first  # memoised: immutable, so sharing it is safe


def test_results_holding_mutable_data_are_never_shared() -> None:
    value = constraints(labels={"team": "a"})
    first = structure_constraints(value)
    second = structure_constraints(value)
    assert first == second
    assert first is not second
    assert first.config is not None
    assert second.config is not None
    assert first.config.labels is not second.config.labels


def test_the_memo_stays_bounded_and_correct_when_it_overflows() -> None:
    for i in range(conv._MEMO_SIZE + 10):
        result = structure_constraints({"model": f"m{i}"})
        assert result.model == f"m{i}"
    assert len(conv._CONSTRAINTS_MEMO._results) <= conv._MEMO_SIZE
    request = build_request(live_connect_constraints={"model": "m0"}, lock_additional_fields=[])
    assert body_bytes(request) == slow_body(request)


@pytest.mark.parametrize(
    ("options", "lock"),
    [
        (None, None),
        (constraints(response_modalities=["AUDIO"], temperature=0.7), []),
        (constraints(response_modalities=["AUDIO"], temperature=0.7), None),
        (constraints(top_k=3, system_instruction="é ünïcode"), ["temperature", "tools"]),
        (constraints(labels={"k": "v"}), []),  # not memoised: the slow path
    ],
)
def test_body_bytes_is_the_json_of_body_for(options: Any, lock: Any) -> None:
    for _ in range(2):  # a miss, then a hit
        request = build_request(live_connect_constraints=options, lock_additional_fields=lock)
        assert body_bytes(request) == slow_body(request)


def test_body_bytes_with_non_utc_times_falls_back_and_matches() -> None:
    tz = dt.timezone(dt.timedelta(hours=2))
    request = build_request(
        live_connect_constraints=constraints(temperature=0.5),
        lock_additional_fields=[],
        now=dt.datetime.now(tz),
    )
    assert request.wire_times is None
    assert body_bytes(request) == slow_body(request)


def test_an_unchanged_echo_gives_what_parsing_it_gives() -> None:
    request = build_request(
        live_connect_constraints=constraints(response_modalities=["AUDIO"], temperature=0.7),
        lock_additional_fields=[],
    )
    sent = json.loads(body_bytes(request))
    payload = {"name": "auth_tokens/x", **sent}
    token = token_from_response(payload, request, base_url="http://x", api_version="v1alpha")
    assert token is not None
    assert token.live_connect_constraints == conv._setup_from_wire(sent["bidiGenerateContentSetup"])
    assert token.live_connect_constraints.model == f"models/{MODEL}"  # the echo, not the input
    assert token.expire_time == request.expire_time
    assert token.locked_fields == tuple(sent["fieldMask"].split(","))


def test_a_changed_echo_is_parsed() -> None:
    request = build_request(
        live_connect_constraints=constraints(temperature=0.7), lock_additional_fields=[]
    )
    sent = json.loads(body_bytes(request))
    echo = json.loads(json.dumps(sent["bidiGenerateContentSetup"]))
    echo["generationConfig"]["temperature"] = 0.1
    payload = {
        "name": "auth_tokens/x",
        "bidiGenerateContentSetup": echo,
        "expireTime": "2031-05-06T07:08:09.123456789Z",
    }
    token = token_from_response(payload, request, base_url="http://x", api_version="v1alpha")
    assert token is not None
    assert token.live_connect_constraints is not None
    assert token.live_connect_constraints.config is not None
    assert token.live_connect_constraints.config.temperature == 0.1
    assert token.live_connect_constraints == setup_from_wire(echo)
    assert token.expire_time == dt.datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc)


def test_import_leaves_aiohttp_and_cattrs_for_first_use() -> None:
    code = "import sys, gemini_tokens; print('cattrs' in sys.modules, 'aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_user_and_wire_are_still_importable() -> None:
    from gemini_tokens._converters import user, wire

    assert user.structure({"model": "m"}, LiveConnectConstraints).model == "m"
    assert wire.unstructure(LiveConnectConfig(top_p=0.5)) == {"topP": 0.5}


# -- requests with the default times, shared within one second ---------------------------------


class _Clock:
    """Stands in for the ``time`` module in ``_request``: a wall clock we set."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    from gemini_tokens import _request

    fake = _Clock(1_900_000_000.25)
    monkeypatch.setattr(_request, "time", fake)
    monkeypatch.setattr(_request, "_DEFAULT_TIMED", {})
    return fake


OPTIONS = constraints(response_modalities=["AUDIO"], temperature=0.7)


def test_default_times_are_whole_seconds_from_now(clock: _Clock) -> None:
    request = build_request(live_connect_constraints=OPTIONS, lock_additional_fields=[])
    second = dt.datetime.fromtimestamp(1_900_000_000, dt.timezone.utc)
    assert request.expire_time == second + dt.timedelta(minutes=30)
    assert request.new_session_expire_time == second + dt.timedelta(seconds=60)
    body = json.loads(body_bytes(request))
    assert body["expireTime"] == "2030-03-17T18:16:40Z"  # 1_900_000_000 + 1800 s
    assert body["newSessionExpireTime"] == "2030-03-17T17:47:40Z"
    assert body_bytes(request) == slow_body(request)


def test_the_same_options_in_the_same_second_share_one_request(clock: _Clock) -> None:
    first = build_request(live_connect_constraints=OPTIONS, lock_additional_fields=[])
    clock.now += 0.5  # still the same second
    assert build_request(live_connect_constraints=OPTIONS, lock_additional_fields=[]) is first
    clock.now += 0.5  # the next second: new times
    later = build_request(live_connect_constraints=OPTIONS, lock_additional_fields=[])
    assert later is not first
    assert later.expire_time - first.expire_time == dt.timedelta(seconds=1)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"uses": 1}, {"uses": 2}),
        ({"uses": 1}, {"uses": True}),
        ({"lock_additional_fields": []}, {"lock_additional_fields": None}),
        ({"lock_additional_fields": []}, {"lock_additional_fields": ["temperature"]}),
        ({"live_connect_constraints": OPTIONS}, {"live_connect_constraints": None}),
        (
            {"live_connect_constraints": constraints(temperature=0.7)},
            {"live_connect_constraints": constraints(temperature=0.8)},
        ),
        (
            {"live_connect_constraints": constraints(top_k=1)},
            {"live_connect_constraints": constraints(top_k=1.0)},
        ),
    ],
)
def test_different_options_never_share_a_request(
    clock: _Clock, a: dict[str, Any], b: dict[str, Any]
) -> None:
    first = build_request(**a)
    try:
        second = build_request(**b)
    except ValidationError:
        return  # refused: certainly not the first request handed back
    assert second is not first
    assert body_bytes(second) == slow_body(second)


def test_a_list_changed_between_calls_is_validated_again(clock: _Clock) -> None:
    lock = ["temperature"]
    first = build_request(live_connect_constraints=OPTIONS, lock_additional_fields=lock)
    lock.append("no_such_field")
    with pytest.raises(ValidationError, match=r"lock_additional_fields\[1\]"):
        build_request(live_connect_constraints=OPTIONS, lock_additional_fields=lock)
    lock.pop()
    assert build_request(live_connect_constraints=OPTIONS, lock_additional_fields=lock) is first


def test_requests_holding_mutable_data_are_not_shared(clock: _Clock) -> None:
    value = constraints(labels={"team": "a"})  # a user's dict the request keeps
    first = build_request(live_connect_constraints=value)
    assert build_request(live_connect_constraints=value) is not first


def test_explicit_times_keep_their_microseconds_and_are_not_shared(clock: _Clock) -> None:
    when = dt.datetime.now(dt.timezone.utc).replace(microsecond=123456) + dt.timedelta(hours=1)
    first = build_request(expire_time=when)
    assert first.expire_time == when
    assert json.loads(body_bytes(first))["expireTime"].endswith(".123456Z")
    assert build_request(expire_time=when) is not first


def test_the_shared_requests_stay_bounded(clock: _Clock) -> None:
    from gemini_tokens import _request

    for uses in range(_request._DEFAULT_TIMED_SIZE * 2):
        assert build_request(uses=uses).uses == uses
    assert len(_request._DEFAULT_TIMED) <= _request._DEFAULT_TIMED_SIZE
