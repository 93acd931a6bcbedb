"""Bad options raise ValidationError naming the option and the rule, and nothing is sent."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

import gemini_tokens
from gemini_tokens import LiveConnectConfig, LiveConnectConstraints, Modality, ValidationError

from .conftest import API_KEY, RecordingServer

NOW = dt.datetime.now(dt.timezone.utc)
MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"

# (options, the field the error must name, a phrase of the rule)
BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"uses": -1}, "uses", "0 (no limit) or more"),
    ({"uses": 1.5}, "uses", "integer"),
    ({"uses": True}, "uses", "integer"),
    ({"uses": "3"}, "uses", "integer"),
    ({"uses": 2**31}, "uses", "at most 2147483647"),
    ({"expire_minutes": 0}, "expire_minutes", "positive"),
    ({"expire_minutes": -5}, "expire_minutes", "positive"),
    ({"expire_minutes": 1200}, "expire_minutes", "20 hours"),
    ({"expire_minutes": "30"}, "expire_minutes", "number of minutes"),
    ({"new_session_expire_minutes": 0}, "new_session_expire_minutes", "positive"),
    ({"expire_time": dt.datetime(2031, 1, 1)}, "expire_time", "timezone-aware"),
    ({"expire_time": NOW - dt.timedelta(minutes=1)}, "expire_time", "future"),
    ({"expire_time": NOW + dt.timedelta(hours=21)}, "expire_time", "20 hours"),
    ({"expire_time": "2031-01-01T00:00:00Z"}, "expire_time", "datetime"),
    (
        {"new_session_expire_time": NOW + dt.timedelta(hours=21)},
        "new_session_expire_time",
        "20 hours",
    ),
    (
        {"expire_minutes": 10, "expire_time": NOW + dt.timedelta(minutes=10)},
        "expire_minutes",
        "not both",
    ),
    (
        {"expire_minutes": 5, "new_session_expire_minutes": 10},
        "new_session_expire_minutes",
        "later than the token's expiry",
    ),
    (
        {
            # hours, not minutes: NOW is read at import, and a slow run must not make it past
            "expire_time": NOW + dt.timedelta(hours=5),
            "new_session_expire_time": NOW + dt.timedelta(hours=6),
        },
        "new_session_expire_time",
        "later than the token's expiry",
    ),
    ({"live_connect_constraints": {"model": ""}}, "live_connect_constraints.model", "empty"),
    ({"live_connect_constraints": {"model": "models/"}}, "live_connect_constraints.model", "empty"),
    ({"live_connect_constraints": {"modle": MODEL}}, "live_connect_constraints.modle", "'model'"),
    (
        {"live_connect_constraints": {"model": MODEL, "config": {"temprature": 0.5}}},
        "live_connect_constraints.config.temprature",
        "did you mean 'temperature'",
    ),
    (
        {"live_connect_constraints": {"config": {"response_modalities": ["SMELL"]}}},
        "live_connect_constraints.config.response_modalities[0]",
        "AUDIO",
    ),
    (
        {"live_connect_constraints": {"config": {"response_modalities": "AUDIO"}}},
        "live_connect_constraints.config.response_modalities",
        "list",
    ),
    (
        {"live_connect_constraints": {"config": {"temperature": "hot"}}},
        "live_connect_constraints.config.temperature",
        "number",
    ),
    (
        {"live_connect_constraints": {"config": {"temperature": float("nan")}}},
        "live_connect_constraints.config.temperature",
        "finite",
    ),
    (
        {"live_connect_constraints": {"config": {"max_output_tokens": 2.5}}},
        "live_connect_constraints.config.max_output_tokens",
        "integer",
    ),
    (
        {"live_connect_constraints": {"config": {"enable_affective_dialog": "yes"}}},
        "live_connect_constraints.config.enable_affective_dialog",
        "boolean",
    ),
    (
        {"live_connect_constraints": {"config": {"explicit_vad_signal": True}}},
        "live_connect_constraints.config.explicit_vad_signal",
        "Vertex AI",
    ),
    (
        {"live_connect_constraints": {"config": {"speech_config": {"voice_confg": {}}}}},
        "live_connect_constraints.config.speech_config.voice_confg",
        "did you mean 'voice_config'",
    ),
    (
        {
            "live_connect_constraints": {
                "config": {"tools": [{"function_declarations": [{"nam": "f"}]}]}
            }
        },
        "live_connect_constraints.config.tools[0].function_declarations[0].nam",
        "did you mean 'name'",
    ),
    (
        {"live_connect_constraints": {"config": {"labels": {"team": 7}}}},
        "live_connect_constraints.config.labels.team",
        "string",
    ),
    (
        {"live_connect_constraints": {"config": {"temperature": 1, "temperature_": 2}}},
        "live_connect_constraints.config.temperature_",
        "did you mean",
    ),
    ({"live_connect_constraints": "gemini"}, "live_connect_constraints", "mapping"),
    ({"lock_additional_fields": ["temprature"]}, "lock_additional_fields[0]", "'temperature'"),
    ({"lock_additional_fields": "temperature"}, "lock_additional_fields", "list"),
    ({"lock_additional_fields": [3]}, "lock_additional_fields[0]", "string"),
    ({"usess": 2}, "usess", "did you mean 'uses'"),
    ({"expire_in_minutes": 5}, "expire_in_minutes", "did you mean 'expire_minutes'"),
    ({"max_retries": -1}, "max_retries", ">= 0"),
    ({"deadline": 0}, "deadline", "positive"),
]


@pytest.mark.parametrize(
    ("options", "field", "rule"), BAD, ids=[f"{i}-{b[1]}" for i, b in enumerate(BAD)]
)
async def test_bad_option_async(
    server: RecordingServer, options: dict[str, Any], field: str, rule: str
) -> None:
    async with gemini_tokens.AsyncClient(API_KEY, base_url=server.base_url) as client:
        with pytest.raises(ValidationError) as info:
            await client.create(**options)
    assert info.value.field == field
    assert rule in str(info.value)
    assert str(info.value).startswith(field)
    assert isinstance(info.value, ValueError)
    assert server.requests == []


@pytest.mark.parametrize(("options", "field", "rule"), BAD[:6])
def test_bad_option_sync(
    server: RecordingServer, options: dict[str, Any], field: str, rule: str
) -> None:
    with (
        gemini_tokens.Client(API_KEY, base_url=server.base_url) as client,
        pytest.raises(ValidationError, match=re.escape(rule)),
    ):
        client.create(**options)
    assert server.requests == []


async def test_good_edge_values(server: RecordingServer) -> None:
    async with gemini_tokens.AsyncClient(API_KEY, base_url=server.base_url) as client:
        await client.create(uses=0, expire_minutes=1199.5, new_session_expire_minutes=0.5)
        assert server.last_body["uses"] == 0
        # An explicit new-session deadline equal to the expiry is allowed.
        when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10)
        await client.create(expire_time=when, new_session_expire_time=when)
        # A non-UTC aware datetime is converted to UTC.
        tz = dt.timezone(dt.timedelta(hours=5, minutes=30))
        await client.create(
            expire_time=(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10)).astimezone(tz)
        )
        assert server.last_body["expireTime"].endswith("Z")


async def test_default_new_session_is_clamped_to_expiry(server: RecordingServer) -> None:
    """With a 30 s lifetime, the default 60 s new-session window is clamped, not an error."""
    async with gemini_tokens.AsyncClient(API_KEY, base_url=server.base_url) as client:
        await client.create(expire_minutes=0.5)
    body = server.last_body
    assert body["newSessionExpireTime"] == body["expireTime"]


@pytest.mark.parametrize("modality", ["audio", "AUDIO", "Audio", Modality.AUDIO])
async def test_modality_spellings(server: RecordingServer, modality: Any) -> None:
    async with gemini_tokens.AsyncClient(API_KEY, base_url=server.base_url) as client:
        await client.create(
            live_connect_constraints={"model": MODEL, "config": {"response_modalities": [modality]}}
        )
    setup = server.last_body["bidiGenerateContentSetup"]
    assert setup["generationConfig"]["responseModalities"] == ["AUDIO"]


async def test_camel_case_config_keys_are_accepted(server: RecordingServer) -> None:
    async with gemini_tokens.AsyncClient(API_KEY, base_url=server.base_url) as client:
        await client.create(
            live_connect_constraints={
                "model": MODEL,
                "config": {"responseModalities": ["TEXT"], "topK": 3},
            },
            lock_additional_fields=["topP"],
        )
    body = server.last_body
    assert body["bidiGenerateContentSetup"]["generationConfig"] == {
        "responseModalities": ["TEXT"],
        "topK": 3,
    }
    assert "generationConfig.topP" in body["fieldMask"].split(",")


async def test_key_given_twice_is_refused(server: RecordingServer) -> None:
    async with gemini_tokens.AsyncClient(API_KEY, base_url=server.base_url) as client:
        with pytest.raises(ValidationError, match="given twice"):
            await client.create(
                live_connect_constraints={"config": {"top_k": 1, "topK": 2}},
            )
    assert server.requests == []


async def test_attrs_instances_are_validated_too(server: RecordingServer) -> None:
    """attrs does not check types; the converter does, for instances as for dicts."""
    bad = LiveConnectConstraints(
        model=MODEL,
        config=LiveConnectConfig(temperature="hot"),  # type: ignore[arg-type]
    )
    async with gemini_tokens.AsyncClient(API_KEY, base_url=server.base_url) as client:
        with pytest.raises(ValidationError) as info:
            await client.create(live_connect_constraints=bad)
    assert info.value.field == "live_connect_constraints.config.temperature"
    assert server.requests == []


async def test_user_data_is_never_renamed(server: RecordingServer) -> None:
    """Schema property names, labels keys and enum values go out exactly as written."""
    config = {
        "labels": {"cost_center": "a_b", "teamName": "x"},
        "tools": [
            {
                "function_declarations": [
                    {
                        "name": "get_weather_now",
                        "parameters": {
                            "type": "OBJECT",
                            "properties": {
                                "city_name": {"type": "STRING", "enum": ["new_york"]},
                                "unit_system": {
                                    "type": "ARRAY",
                                    "items": {
                                        "type": "OBJECT",
                                        "properties": {"deg_c": {"type": "NUMBER"}},
                                    },
                                    "min_items": 1,
                                },
                            },
                            "required": ["city_name"],
                            "property_ordering": ["city_name", "unit_system"],
                        },
                    }
                ]
            }
        ],
        "system_instruction": {"parts": [{"text": "keep_snake_case"}]},
    }
    async with gemini_tokens.AsyncClient(API_KEY, base_url=server.base_url) as client:
        await client.create(live_connect_constraints={"model": MODEL, "config": config})
    setup = server.last_body["bidiGenerateContentSetup"]
    assert setup["labels"] == {"cost_center": "a_b", "teamName": "x"}
    declaration = setup["tools"][0]["functionDeclarations"][0]
    assert declaration["name"] == "get_weather_now"
    params = declaration["parameters"]
    assert set(params["properties"]) == {"city_name", "unit_system"}
    assert params["properties"]["city_name"]["enum"] == ["new_york"]
    assert params["propertyOrdering"] == ["city_name", "unit_system"]
    assert params["properties"]["unit_system"]["minItems"] == 1
    assert set(params["properties"]["unit_system"]["items"]["properties"]) == {"deg_c"}
    assert params["required"] == ["city_name"]
    assert setup["systemInstruction"] == {"parts": [{"text": "keep_snake_case"}]}


async def test_whole_generation_config_and_shorthands(server: RecordingServer) -> None:
    async with gemini_tokens.AsyncClient(API_KEY, base_url=server.base_url) as client:
        await client.create(
            live_connect_constraints={
                "model": MODEL,
                "config": {
                    "generation_config": {"candidate_count": 1, "presence_penalty": 0.1},
                    "speech_config": "Kore",
                    "media_resolution": "low",
                    "thinking_config": {"thinking_budget": 0, "include_thoughts": False},
                    "context_window_compression": {
                        "trigger_tokens": 1000,
                        "sliding_window": {"target_tokens": 500},
                    },
                    "safety_settings": [
                        {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}
                    ],
                },
            },
            lock_additional_fields=["frequency_penalty", "system_instruction"],
        )
    body = server.last_body
    generation = body["bidiGenerateContentSetup"]["generationConfig"]
    assert generation["candidateCount"] == 1
    assert generation["presencePenalty"] == 0.1
    assert generation["mediaResolution"] == "MEDIA_RESOLUTION_LOW"
    assert generation["speechConfig"] == {
        "voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Kore"}}
    }
    assert generation["thinkingConfig"] == {"thinkingBudget": 0, "includeThoughts": False}
    setup = body["bidiGenerateContentSetup"]
    assert setup["contextWindowCompression"] == {
        "triggerTokens": 1000,
        "slidingWindow": {"targetTokens": 500},
    }
    assert setup["safetySettings"] == [
        {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}
    ]
    paths = body["fieldMask"].split(",")
    assert "generationConfig.frequencyPenalty" in paths
    assert "systemInstruction" in paths
    assert "contextWindowCompression.slidingWindow" in paths


async def test_lock_without_constraints_sends_camel_case_paths(server: RecordingServer) -> None:
    async with gemini_tokens.AsyncClient(API_KEY, base_url=server.base_url) as client:
        await client.create(lock_additional_fields=["top_k", "system_instruction"])
    body = server.last_body
    assert "bidiGenerateContentSetup" not in body
    assert body["fieldMask"] == "generationConfig.topK,systemInstruction"


async def test_lists_are_never_expanded_in_the_mask(server: RecordingServer) -> None:
    async with gemini_tokens.AsyncClient(API_KEY, base_url=server.base_url) as client:
        await client.create(
            live_connect_constraints={"model": MODEL, "config": {"tools": [{"google_search": {}}]}},
            lock_additional_fields=[],
        )
    assert set(server.last_body["fieldMask"].split(",")) == {"model", "tools"}


def test_check_create_options_is_create_s_validation_without_sending() -> None:
    """The public check a server runs at start-up: create()'s rules, nothing sent."""
    gemini_tokens.check_create_options(uses=3, live_connect_constraints={"model": "m"})
    with pytest.raises(gemini_tokens.ValidationError, match=r"^uses: must be 0"):
        gemini_tokens.check_create_options(uses=-1)
    with pytest.raises(
        gemini_tokens.ValidationError, match=r"live_connect_constraints\.config\.temprature"
    ):
        gemini_tokens.check_create_options(
            live_connect_constraints={"model": "m", "config": {"temprature": 1}}
        )
