"""Every vector of ../shared/spec/vectors.json, sent to a real server, async and sync.

Bodies are compared as wire.md says: timestamps as instants, numbers numerically, fieldMask
as a set of paths. A time the input omits must be sent as its default.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
from typing import Any

import pytest

import gemini_tokens
from gemini_tokens._models import format_time
from gemini_tokens._parse import parse_time

from .conftest import API_KEY, RecordingServer

SPEC = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "spec" / "vectors.json"
LOCAL_SPEC = pathlib.Path(__file__).resolve().parent / "spec" / "vectors.json"
VECTORS: list[dict[str, Any]] = json.loads((SPEC if SPEC.exists() else LOCAL_SPEC).read_text())
DEFAULT_EXPIRE = dt.timedelta(minutes=30)
DEFAULT_NEW_SESSION = dt.timedelta(seconds=60)
SLACK = dt.timedelta(seconds=5)


def _materialize(value: Any, now: dt.datetime) -> Any:
    """Turn ``{"from_now_s": N}`` into an aware datetime N seconds after ``now``."""
    if isinstance(value, dict) and set(value) == {"from_now_s"}:
        return now + dt.timedelta(seconds=value["from_now_s"])
    if isinstance(value, dict):
        return {k: _materialize(v, now) for k, v in value.items()}
    if isinstance(value, list):
        return [_materialize(v, now) for v in value]
    return value


def _same(actual: Any, expected: Any, path: str) -> None:
    if isinstance(expected, dt.datetime):
        assert parse_time(actual) == expected, path
    elif isinstance(expected, dict):
        assert isinstance(actual, dict), path
        assert set(actual) == set(expected), f"{path}: keys {sorted(actual)} != {sorted(expected)}"
        for key in expected:
            _same(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), path
        assert len(actual) == len(expected), path
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _same(a, e, f"{path}[{index}]")
    elif isinstance(expected, (int, float)) and not isinstance(expected, bool):
        assert not isinstance(actual, bool), path
        assert actual == pytest.approx(expected), path
    else:
        assert actual == expected, path


def assert_body_matches(actual: dict[str, Any], vector: dict[str, Any], now: dt.datetime) -> None:
    """Compare a sent body with a vector's canonical body, as wire.md prescribes."""
    expected = _materialize(vector["body"], now)
    actual = dict(actual)
    # Omitted times are sent as their defaults.
    expire = expected.pop("expireTime", None)
    sent_expire = parse_time(actual.pop("expireTime"))
    assert sent_expire is not None
    if expire is None:
        assert abs(sent_expire - (now + DEFAULT_EXPIRE)) < SLACK
    else:
        assert sent_expire == expire
    new_session = expected.pop("newSessionExpireTime", None)
    sent_new_session = parse_time(actual.pop("newSessionExpireTime"))
    assert sent_new_session is not None
    if new_session is None:
        default = min(now + DEFAULT_NEW_SESSION, sent_expire)
        assert abs(sent_new_session - default) < SLACK
    else:
        assert sent_new_session == new_session
    assert sent_new_session <= sent_expire
    mask = expected.pop("fieldMask", None)
    sent_mask = actual.pop("fieldMask", None)
    if mask is None:
        assert sent_mask is None
    else:
        assert isinstance(sent_mask, str)
        assert set(sent_mask.split(",")) == set(mask.split(","))
        assert len(sent_mask.split(",")) == len(set(sent_mask.split(","))), "duplicate paths"
    _same(actual, expected, "body")


def _call_args(vector: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    return _materialize(vector["input"], now)


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
async def test_vector_async(server: RecordingServer, vector: dict[str, Any]) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    async with gemini_tokens.AsyncClient(API_KEY, base_url=server.base_url) as client:
        token = await client.create(**_call_args(vector, now))
    assert_body_matches(server.last_body, vector, now)
    assert token.name.startswith("auth_tokens/")
    assert token.uses == vector["body"]["uses"]
    request = server.requests[-1]
    assert request["path"] == "/v1alpha/auth_tokens"
    assert request["headers"]["x-goog-api-key"] == API_KEY
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["User-Agent"].startswith("gemini-tokens/")
    assert API_KEY.encode() not in request["raw"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_sync(server: RecordingServer, vector: dict[str, Any]) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    with gemini_tokens.Client(API_KEY, base_url=server.base_url) as client:
        token = client.create(**_call_args(vector, now))
    assert_body_matches(server.last_body, vector, now)
    assert token.name.startswith("auth_tokens/")


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_with_attrs_classes(server: RecordingServer, vector: dict[str, Any]) -> None:
    """The same vectors, with constraints given as attrs classes instead of dicts."""
    now = dt.datetime.now(dt.timezone.utc)
    args = _call_args(vector, now)
    if "live_connect_constraints" in args:
        args["live_connect_constraints"] = gemini_tokens._converters.structure_constraints(
            args["live_connect_constraints"]
        )
    with gemini_tokens.Client(API_KEY, base_url=server.base_url) as client:
        client.create(**args)
    assert_body_matches(server.last_body, vector, now)


def test_comparator_can_fail() -> None:
    """The comparison above is strict: a wrong temperature or an extra path is caught."""
    now = dt.datetime.now(dt.timezone.utc)
    vector = next(v for v in VECTORS if v["name"] == "lock_empty")
    good = {
        "uses": 1,
        "expireTime": format_time(now + DEFAULT_EXPIRE),
        "newSessionExpireTime": format_time(now + DEFAULT_NEW_SESSION),
        "bidiGenerateContentSetup": {
            "model": "models/gemini-2.5-flash-native-audio-preview-12-2025",
            "generationConfig": {"responseModalities": ["AUDIO"], "temperature": 0.7},
        },
        "fieldMask": "model,generationConfig.temperature,generationConfig.responseModalities",
    }
    assert_body_matches(good, vector, now)
    bad_temperature = json.loads(json.dumps(good))
    bad_temperature["bidiGenerateContentSetup"]["generationConfig"]["temperature"] = 0.8
    with pytest.raises(AssertionError):
        assert_body_matches(bad_temperature, vector, now)
    extra_path = dict(good, fieldMask=good["fieldMask"] + ",tools")
    with pytest.raises(AssertionError):
        assert_body_matches(extra_path, vector, now)
    snake_key = json.loads(json.dumps(good))
    gen = snake_key["bidiGenerateContentSetup"]["generationConfig"]
    gen["response_modalities"] = gen.pop("responseModalities")
    with pytest.raises(AssertionError):
        assert_body_matches(snake_key, vector, now)


@pytest.mark.skipif(not SPEC.exists(), reason="the shared spec is not beside this checkout (CI)")
def test_local_copy_of_the_vectors_is_current() -> None:
    """tests/spec/vectors.json is what CI uses; it must match the shared spec."""
    assert json.loads(LOCAL_SPEC.read_text()) == json.loads(SPEC.read_text())
