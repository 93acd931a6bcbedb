"""Property tests: whatever a caller passes, or a server answers, the outcome is typed.

- ``create()`` with arbitrary option values and nested configs returns a token or raises
  `ValidationError`, never another exception; when it raises, nothing was sent.
- Whatever JSON a server answers with 200, ``create()`` returns a token or raises
  `InvalidResponseError`.
- Whatever a server answers with an error status, the exception is an `APIStatusError`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from gemini_tokens import (
    APIStatusError,
    Client,
    EphemeralToken,
    InvalidResponseError,
    LiveConnectConfig,
    Modality,
    RetryPolicy,
    Timeout,
    ValidationError,
)
from gemini_tokens._errors import error_from_response
from gemini_tokens._naming import LOCKABLE_FIELDS, camel

from .conftest import API_KEY
from .fault_server import FaultServer, Received, json_reply, no_leaked_threads_or_finalizer_errors

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
CONFIG_FIELDS = [f.name for f in attrs.fields(LiveConnectConfig)]


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[FaultServer, Client]]:
    """One server and one sync client for every example (checked for leaks at the end)."""
    with FaultServer() as server, no_leaked_threads_or_finalizer_errors():
        client = Client(
            API_KEY,
            base_url=server.base_url,
            timeout=Timeout(connect=5.0, total=5.0),
            max_retries=0,
        )
        with client:
            yield server, client
        assert server.wait_until_idle()


# -- strategies ------------------------------------------------------------------------------------

#: Numbers that break naive arithmetic: overflow, non-finite, beyond int32, denormal.
nasty_numbers = st.sampled_from(
    [math.inf, -math.inf, math.nan, 1e308, -1e308, 1e-300, -0.0, 2**31, 2**63, 10**30, -(2**63)]
)
scalars = st.one_of(
    nasty_numbers,
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.binary(max_size=4),
    st.datetimes(timezones=st.none() | st.just(dt.timezone.utc)),
    st.sampled_from([Modality.AUDIO, object(), {1, 2}, (), b""]),
)
junk = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8) | st.integers() | st.none(), inner, max_size=3)
    ),
    max_leaves=8,
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**31), max_value=2**31)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
names = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=10)

VALID: dict[str, st.SearchStrategy[Any]] = {
    "response_modalities": st.lists(st.sampled_from(["audio", "TEXT", Modality.AUDIO]), max_size=2),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1),
    "top_k": st.integers(1, 100),
    "max_output_tokens": st.integers(1, 8192),
    "media_resolution": st.sampled_from(["low", "MEDIA_RESOLUTION_HIGH"]),
    "seed": st.integers(0, 2**31 - 1),
    "speech_config": names
    | st.builds(lambda v: {"voice_config": {"prebuilt_voice_config": {"voice_name": v}}}, names),
    "thinking_config": st.fixed_dictionaries(
        {}, optional={"thinking_budget": st.integers(0, 1024)}
    ),
    "enable_affective_dialog": st.booleans(),
    "system_instruction": st.text(max_size=30),
    "tools": st.lists(
        st.builds(
            lambda n, props: {
                "function_declarations": [
                    {
                        "name": n,
                        "parameters": {
                            "type": "OBJECT",
                            "properties": {p: {"type": "STRING"} for p in props},
                        },
                    }
                ]
            },
            names,
            st.lists(names, max_size=3),
        )
        | st.just({"google_search": {}}),
        max_size=2,
    ),
    "session_resumption": st.just({}) | st.builds(lambda h: {"handle": h}, names),
    "input_audio_transcription": st.just({}),
    "output_audio_transcription": st.just({}),
    "realtime_input_config": st.builds(
        lambda d: {"automatic_activity_detection": {"disabled": d}}, st.booleans()
    ),
    "context_window_compression": st.builds(
        lambda t: {"sliding_window": {"target_tokens": t}}, st.integers(1, 10**6)
    ),
    "proactivity": st.builds(lambda p: {"proactive_audio": p}, st.booleans()),
    "labels": st.dictionaries(names, st.text(max_size=8), max_size=3),
    "avatar_config": st.dictionaries(names, json_values, max_size=2),
}


def config_keys() -> st.SearchStrategy[Any]:
    return (
        st.sampled_from(CONFIG_FIELDS)
        | st.sampled_from(CONFIG_FIELDS).map(camel)
        | st.text(max_size=10)
    )


def _leaves(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


# The right shape with junk at the leaves: gets past the outer checks, to the inner ones.
SHAPED_JUNK: dict[str, st.SearchStrategy[Any]] = {
    "response_modalities": st.lists(junk, max_size=2),
    "speech_config": _leaves(
        voice_config=_leaves(prebuilt_voice_config=_leaves(voice_name=junk)),
        language_code=junk,
    ),
    "thinking_config": _leaves(thinking_budget=junk, include_thoughts=junk),
    "generation_config": st.dictionaries(
        st.sampled_from(["temperature", "candidate_count", "stop_sequences", "topK", "bad"]),
        junk,
        max_size=2,
    ),
    "system_instruction": _leaves(parts=st.lists(_leaves(text=junk), max_size=2), role=junk),
    "tools": st.lists(
        _leaves(
            google_search=st.dictionaries(names, junk, max_size=2),
            function_declarations=st.lists(
                _leaves(
                    name=junk,
                    parameters=st.dictionaries(names, junk, max_size=2),
                    parameters_json_schema=junk,
                ),
                max_size=2,
            ),
        ),
        max_size=2,
    ),
    "realtime_input_config": _leaves(
        automatic_activity_detection=_leaves(disabled=junk, prefix_padding_ms=junk)
    ),
    "context_window_compression": _leaves(sliding_window=_leaves(target_tokens=junk)),
    "safety_settings": st.lists(_leaves(category=junk, threshold=junk), max_size=2),
    "labels": st.dictionaries(names | st.integers() | st.none(), junk, max_size=2),
    "avatar_config": st.dictionaries(names, junk, max_size=2),
}
valid_configs = st.fixed_dictionaries({}, optional=VALID)


def _one_shaped_junk(name: str) -> st.SearchStrategy[dict[str, Any]]:
    others = {k: v for k, v in VALID.items() if k != name}
    return st.fixed_dictionaries({name: SHAPED_JUNK[name]}, optional=others)


# Valid configs but for one field, which has the right shape and junk inside.
shaped_configs = st.sampled_from(sorted(SHAPED_JUNK)).flatmap(_one_shaped_junk)
any_configs = st.dictionaries(
    config_keys(),
    st.one_of(junk, *VALID.values()),
    max_size=4,
)
constraints = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"model": st.sampled_from(["gemini-live-2.5-flash", "models/gemini-live"])},
        optional={"config": valid_configs},
    ),
    st.fixed_dictionaries(
        {"model": st.just("gemini-live")},
        optional={"config": shaped_configs | st.builds(LiveConnectConfig)},
    ),
    st.fixed_dictionaries({}, optional={"model": names | junk, "config": any_configs | junk}),
    junk,
)


def times() -> st.SearchStrategy[Any]:
    """Datetimes around "now" (aware and naive, past and beyond 20 h) and junk."""
    offsets = st.timedeltas(min_value=dt.timedelta(hours=-2), max_value=dt.timedelta(hours=22))
    aware = offsets.map(lambda d: dt.datetime.now(dt.timezone.utc) + d)
    return st.one_of(st.none(), aware, aware.map(lambda t: t.replace(tzinfo=None)), junk)


def deadlines() -> st.SearchStrategy[Any]:
    # A tiny positive deadline is valid yet must time out; keep valid ones generous.
    return st.one_of(
        st.none(),
        st.floats(5, 1e6),
        junk.filter(
            lambda v: (
                not (
                    isinstance(v, (int, float))
                    and not isinstance(v, bool)
                    and math.isfinite(v)
                    and 0 < v < 5
                )
            )
        ),
    )


locks = (
    st.none()
    | st.lists(st.sampled_from(sorted(LOCKABLE_FIELDS)) | st.text(max_size=8), max_size=3)
    | junk
)
options = st.fixed_dictionaries(
    {},
    optional={
        "uses": st.integers(-3, 10) | nasty_numbers | junk,
        "expire_minutes": st.floats(0.5, 1199) | nasty_numbers | junk,
        "expire_time": times(),
        "new_session_expire_minutes": st.floats(0.5, 30) | nasty_numbers | junk,
        "new_session_expire_time": times(),
        "live_connect_constraints": constraints,
        "lock_additional_fields": locks,
        "max_retries": st.integers(-2, 3) | nasty_numbers | junk,
        "deadline": deadlines(),
    },
)
unknown_options = st.dictionaries(
    st.sampled_from(["use", "expire", "config", "model", "retry", "timeout"]), junk, max_size=1
)


def check_outcome(
    server: FaultServer, client: Client, opts: dict[str, Any], extra: dict[str, Any]
) -> None:
    """A token (and one request sent) or a ValidationError (and nothing sent); nothing else."""
    before = server.attempts
    result: EphemeralToken | ValidationError
    try:
        result = client.create(**opts, **extra)
    except ValidationError as exc:  # anything else fails the test
        result = exc
    if isinstance(result, ValidationError):
        event(f"invalid: {result.field.split('.')[0].split('[')[0]}")
        assert server.attempts == before, "an invalid input was sent"
        assert result.field  # it names the offending option
        assert str(result)
    else:
        event("token")
        assert isinstance(result, EphemeralToken)
        assert not extra
        assert server.attempts == before + 1
        sent = server.requests[-1].json
        assert isinstance(sent, dict)
        assert sent["uses"] == opts.get("uses", 1)


# -- properties ------------------------------------------------------------------------------------


@SETTINGS
@given(opts=options, extra=st.one_of(*[st.just({})] * 5, unknown_options))
# Regressions, always tried: these once escaped as OverflowError.
@example(opts={"expire_minutes": math.inf}, extra={})
@example(opts={"new_session_expire_minutes": 1e308}, extra={})
def test_create_with_arbitrary_options_returns_a_token_or_raises_validation_error(
    shared: tuple[FaultServer, Client], opts: dict[str, Any], extra: dict[str, Any]
) -> None:
    check_outcome(*shared, opts, extra)


@SETTINGS
@given(live=constraints, lock=locks)
# Regressions, always tried: free-form fields once let non-JSON values reach json.dumps.
@example(live={"model": "m", "config": {"avatar_config": {"a": {1, 2}}}}, lock=None)
@example(live={"model": "m", "config": {"avatar_config": {"a": math.nan}}}, lock=[])
@example(live={"model": "m", "config": {"tools": [{"google_search": {"x": b""}}]}}, lock=["tools"])
def test_create_with_arbitrary_nested_configs_returns_a_token_or_raises_validation_error(
    shared: tuple[FaultServer, Client], live: Any, lock: Any
) -> None:
    check_outcome(*shared, {"live_connect_constraints": live, "lock_additional_fields": lock}, {})


def _json_ok(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


TOKEN_FIELDS = ["name", "uses", "expireTime", "newSessionExpireTime", "fieldMask"]
token_payloads = json_values | st.dictionaries(
    st.sampled_from([*TOKEN_FIELDS, "bidiGenerateContentSetup", "other"]),
    json_values | junk.filter(_json_ok),
    max_size=5,
)


@SETTINGS
@given(payload=token_payloads)
def test_any_200_answer_is_a_token_or_invalid_response(
    shared: tuple[FaultServer, Client], payload: Any
) -> None:
    server, client = shared
    if isinstance(payload, dict) and "name" not in payload and len(payload) % 2:
        payload = {**payload, "name": "auth_tokens/abc"}  # half the dicts carry a name

    def answer(request: Received) -> Any:
        return json_reply(200, payload)

    server.handler = answer
    result: EphemeralToken | InvalidResponseError
    try:
        result = client.create()
    except InvalidResponseError as exc:  # anything else fails the test
        result = exc
    finally:
        server.handler = None
    if isinstance(result, InvalidResponseError):
        assert result.attempts == 1
    else:
        assert isinstance(payload, dict)
        assert result.name == payload["name"]


@SETTINGS
@given(
    status=st.integers(300, 599),
    body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps({"error": v}).encode()),
    content_type=st.sampled_from(["", "application/json", "text/html", "text/plain"]),
    retry_after=st.none() | st.floats(0, 1e6),
)
def test_any_error_answer_is_an_api_status_error(
    status: int, body: bytes, content_type: str, retry_after: float | None
) -> None:
    exc = error_from_response(
        status,
        body + API_KEY.encode(),
        content_type=content_type,
        retry_after_header=retry_after,
        redact=(API_KEY,),
    )
    assert isinstance(exc, APIStatusError)
    assert exc.status_code == status
    assert API_KEY not in str(exc)
    assert API_KEY not in repr(exc)
    assert len(exc.message) <= 500
    if retry_after is not None:
        assert exc.retry_after == retry_after
    assert exc.retry_after is None or (math.isfinite(exc.retry_after) and exc.retry_after >= 0)


@SETTINGS
@given(
    policy=st.builds(
        RetryPolicy,
        max_retries=st.integers(0, 10),
        initial_backoff=st.floats(0, 10),
        backoff_factor=st.floats(1, 10),
        max_backoff=st.floats(0, 60),
    ),
    retry=st.integers(1, 10**18),
)
# Regressions: a log of 0 once raised; a denormal first ceiling once overflowed.
@example(policy=RetryPolicy(initial_backoff=2.0, max_backoff=5e-324), retry=1)
@example(policy=RetryPolicy(initial_backoff=5e-324, backoff_factor=2.0), retry=1100)
def test_backoff_never_exceeds_its_ceiling(policy: RetryPolicy, retry: int) -> None:
    ceiling = policy.backoff_ceiling(retry)
    assert 0 <= ceiling <= policy.max_backoff
    assert policy.backoff_ceiling(retry + 1) >= ceiling  # never shrinks
    assert ceiling <= max(policy.initial_backoff, policy.max_backoff)
    assert 0 <= policy.backoff(retry) <= ceiling
