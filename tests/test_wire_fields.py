"""Issue #12, the client side: what the newest official SDKs send, canonically.

Typed enums sent by their UPPER_CASE names whatever the user's case, model names, built-in
tools and the avatar as typed camelCase structures, the fields google-genai sends to the
Developer API, and the Vertex-only ones refused before anything is sent.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gemini_tokens
from gemini_tokens import (
    ActivityHandling,
    AvatarConfig,
    EndSensitivity,
    Environment,
    GoogleMaps,
    HarmBlockThreshold,
    HarmCategory,
    LiveConnectConfig,
    LiveConnectConstraints,
    Part,
    StartSensitivity,
    ThinkingLevel,
    Tool,
    ValidationError,
)
from gemini_tokens._converters import body_for
from gemini_tokens._hooks import REFUSED
from gemini_tokens._request import build_request

from .conftest import API_KEY, RecordingServer

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"


def setup_of(config: dict[str, Any], model: str = MODEL, **options: Any) -> dict[str, Any]:
    """The ``bidiGenerateContentSetup`` sent for ``config``."""
    request = build_request(live_connect_constraints={"model": model, "config": config}, **options)
    setup: dict[str, Any] = body_for(request)["bidiGenerateContentSetup"]
    return setup


def refused(config: dict[str, Any], model: str = MODEL) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        build_request(live_connect_constraints={"model": model, "config": config})
    return info.value


# -- enums -------------------------------------------------------------------------------------

#: (the config that sets the enum field, the path of the field on the wire, its enum type)
ENUM_FIELDS: list[tuple[str, Any]] = [
    ("response_modalities[0]", gemini_tokens.Modality),
    ("media_resolution", gemini_tokens.MediaResolution),
    ("thinking_config.thinking_level", ThinkingLevel),
    ("realtime_input_config.activity_handling", ActivityHandling),
    ("realtime_input_config.turn_coverage", gemini_tokens.TurnCoverage),
    (
        "realtime_input_config.automatic_activity_detection.start_of_speech_sensitivity",
        StartSensitivity,
    ),
    (
        "realtime_input_config.automatic_activity_detection.end_of_speech_sensitivity",
        EndSensitivity,
    ),
    ("safety_settings[0].category", HarmCategory),
    ("safety_settings[0].threshold", HarmBlockThreshold),
    ("tools[0].function_declarations[0].behavior", gemini_tokens.Behavior),
    ("tools[0].computer_use.environment", Environment),
    (
        "tools[0].google_search_retrieval.dynamic_retrieval_config.mode",
        gemini_tokens.DynamicRetrievalMode,
    ),
    ("input_audio_transcription.mode", gemini_tokens.AudioTranscriptionMode),
    ("output_audio_transcription.mode", gemini_tokens.AudioTranscriptionMode),
]


def _nest(path: str, value: Any) -> dict[str, Any]:
    """``"a.b[0].c"``, v -> ``{"a": {"b": [{"c": v}]}}``."""
    head, _, rest = path.partition(".")
    name, index = (head[:-3], True) if head.endswith("[0]") else (head, False)
    inner = _nest(rest, value) if rest else value
    return {name: [inner] if index else inner}


def _wire_path(path: str) -> list[str]:
    """The wire keys along ``path``: generation fields sit under generationConfig."""
    from gemini_tokens._naming import FLAT_GENERATION_FIELDS, camel

    keys = [camel(part.removesuffix("[0]")) for part in path.split(".")]
    if path.split(".")[0].removesuffix("[0]") in FLAT_GENERATION_FIELDS:
        keys.insert(0, "generationConfig")
    return keys


def _sent(setup: Any, path: str) -> Any:
    for key in _wire_path(path):
        setup = setup[key]
        if isinstance(setup, list):
            setup = setup[0]
    return setup


def _spellings(name: str) -> st.SearchStrategy[str]:
    """Every mix of upper and lower case of ``name``."""
    return st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda upper: "".join(
            c.upper() if u else c.lower() for c, u in zip(name, upper, strict=True)
        )
    )


@pytest.mark.parametrize(("path", "enum_type"), ENUM_FIELDS, ids=[p for p, _ in ENUM_FIELDS])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_enum_values_go_out_upper_case_whatever_the_case(
    path: str, enum_type: type[enum.Enum], data: st.DataObject
) -> None:
    member = data.draw(st.sampled_from(list(enum_type)))
    spelling = data.draw(st.one_of(_spellings(member.value), st.just(member)))
    setup = setup_of(_nest(path, spelling))
    assert _sent(setup, path) == member.value
    assert type(_sent(setup, path)) is str


@pytest.mark.parametrize(("path", "enum_type"), ENUM_FIELDS, ids=[p for p, _ in ENUM_FIELDS])
def test_an_unknown_enum_value_names_the_field_and_the_allowed_values(
    path: str, enum_type: type[enum.Enum]
) -> None:
    error = refused(_nest(path, "not_a_value"))
    assert error.field == f"live_connect_constraints.config.{path}"
    for member in enum_type:
        assert member.value in str(error)
    assert "'not_a_value'" in str(error)


@pytest.mark.parametrize(
    ("path", "short", "canonical"),
    [
        ("media_resolution", "low", "MEDIA_RESOLUTION_LOW"),
        (
            "realtime_input_config.automatic_activity_detection.start_of_speech_sensitivity",
            "Low",
            "START_SENSITIVITY_LOW",
        ),
        ("tools[0].computer_use.environment", "browser", "ENVIRONMENT_BROWSER"),
        ("safety_settings[0].category", "harassment", "HARM_CATEGORY_HARASSMENT"),
    ],
)
def test_the_common_prefix_may_be_left_out(path: str, short: str, canonical: str) -> None:
    assert _sent(setup_of(_nest(path, short)), path) == canonical


def test_a_non_string_enum_value_is_refused() -> None:
    error = refused({"thinking_config": {"thinking_level": 2}})
    assert error.field == "live_connect_constraints.config.thinking_config.thinking_level"


# -- model names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "sent"),
    [
        ("tunedModels/my-live-tune", "tunedModels/my-live-tune"),
        ("models/gemini-x", "models/gemini-x"),
        ("gemini-x", "models/gemini-x"),
    ],
)
def test_model_names(model: str, sent: str) -> None:
    assert setup_of({}, model=model)["model"] == sent


@pytest.mark.parametrize(
    "model", ["gemini?key=x", "a&b=c", "models/../files", "..", "tunedModels/"]
)
async def test_a_model_name_that_would_change_the_request_is_refused(
    server: RecordingServer, model: str
) -> None:
    async with gemini_tokens.AsyncClient(API_KEY, base_url=server.base_url) as client:
        with pytest.raises(ValidationError) as info:
            await client.create(live_connect_constraints={"model": model})
    assert info.value.field == "live_connect_constraints.model"
    assert server.requests == []


# -- built-in tools and the avatar: typed, camelCase -------------------------------------------


def test_built_in_tools_are_camel_case_structures() -> None:
    start = dt.datetime(2031, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    tools = setup_of(
        {
            "tools": [
                {
                    "google_search": {
                        "search_types": {"web_search": {}, "image_search": {}},
                        "time_range_filter": {
                            "start_time": start,
                            "end_time": "2031-01-03T00:00:00Z",
                        },
                    }
                },
                {
                    "google_search_retrieval": {
                        "dynamic_retrieval_config": {"mode": "dynamic", "dynamic_threshold": 0.3}
                    }
                },
                {"google_maps": {"enable_widget": True}},
                {
                    "computer_use": {
                        "environment": "browser",
                        "excluded_predefined_functions": ["x"],
                    }
                },
                {"file_search": {"file_search_store_names": ["fileSearchStores/a"], "top_k": 3}},
                {"code_execution": {}, "url_context": {}},
            ]
        }
    )["tools"]
    assert tools == [
        {
            "googleSearch": {
                "searchTypes": {"webSearch": {}, "imageSearch": {}},
                "timeRangeFilter": {
                    "startTime": "2031-01-02T03:04:05Z",
                    "endTime": "2031-01-03T00:00:00Z",
                },
            }
        },
        {
            "googleSearchRetrieval": {
                "dynamicRetrievalConfig": {"mode": "MODE_DYNAMIC", "dynamicThreshold": 0.3}
            }
        },
        {"googleMaps": {"enableWidget": True}},
        {
            "computerUse": {
                "environment": "ENVIRONMENT_BROWSER",
                "excludedPredefinedFunctions": ["x"],
            }
        },
        {"fileSearch": {"fileSearchStoreNames": ["fileSearchStores/a"], "topK": 3}},
        {"codeExecution": {}, "urlContext": {}},
    ]


def test_mcp_headers_are_user_data() -> None:
    headers = {"X-Api_key": "v", "authorization_token": "w", "lowerCamel": "x"}
    (tool,) = setup_of(
        {
            "tools": [
                {
                    "mcp_servers": [
                        {
                            "name": "docs",
                            "streamable_http_transport": {
                                "url": "https://mcp.example/",
                                "headers": headers,
                                "terminate_on_close": True,
                            },
                        }
                    ]
                }
            ]
        }
    )["tools"]
    assert tool == {
        "mcpServers": [
            {
                "name": "docs",
                "streamableHttpTransport": {
                    "url": "https://mcp.example/",
                    "headers": headers,
                    "terminateOnClose": True,
                },
            }
        ]
    }


def test_a_timestamp_without_offset_is_refused() -> None:
    error = refused(
        {"tools": [{"google_search": {"time_range_filter": {"start_time": "2031-01-02"}}}]}
    )
    assert error.field.endswith("google_search.time_range_filter.start_time")
    assert "RFC 3339" in str(error)


def test_avatar_config_is_camel_case() -> None:
    avatar = setup_of(
        {
            "avatar_config": {
                "avatar_name": "ava",
                "customized_avatar": {"image_mime_type": "image/png", "image_data": "iVBO"},
                "audio_bitrate_bps": 32000,
                "video_bitrate_bps": 1000000,
            }
        }
    )["avatarConfig"]
    assert avatar == {
        "avatarName": "ava",
        "customizedAvatar": {"imageMimeType": "image/png", "imageData": "iVBO"},
        "audioBitrateBps": 32000,
        "videoBitrateBps": 1000000,
    }


def test_unknown_keys_in_tools_and_avatar_are_refused() -> None:
    error = refused({"tools": [{"google_maps": {"enable_widgit": True}}]})
    assert error.field == "live_connect_constraints.config.tools[0].google_maps.enable_widgit"
    assert "did you mean 'enable_widget'" in str(error)
    error = refused({"avatar_config": {"name": "x"}})
    assert error.field == "live_connect_constraints.config.avatar_config.name"


def test_typed_instances_work_too() -> None:
    config = LiveConnectConfig(
        tools=(Tool(google_maps=GoogleMaps(enable_widget=True)),),
        avatar_config=AvatarConfig(avatar_name="ava"),
    )
    request = build_request(
        live_connect_constraints=LiveConnectConstraints(model="m", config=config)
    )
    setup = body_for(request)["bidiGenerateContentSetup"]
    assert setup["tools"] == [{"googleMaps": {"enableWidget": True}}]
    assert setup["avatarConfig"] == {"avatarName": "ava"}


# -- fields google-genai sends to the Developer API --------------------------------------------


def test_voice_fields() -> None:
    speech = setup_of(
        {
            "speech_config": {
                "voice_config": {
                    "voice": "Kore",
                    "replicated_voice_config": {
                        "mime_type": "audio/wav",
                        "voice_sample_audio": "UklGR",
                        "voice_consent_signature": {"signature": "sig"},
                    },
                }
            }
        }
    )["generationConfig"]["speechConfig"]
    assert speech == {
        "voiceConfig": {
            "voice": "Kore",
            "replicatedVoiceConfig": {
                "mimeType": "audio/wav",
                "voiceSampleAudio": "UklGR",
                "voiceConsentSignature": {"signature": "sig"},
            },
        }
    }


def test_transcription_and_realtime_fields() -> None:
    setup = setup_of(
        {
            "input_audio_transcription": {
                "language_codes": ["en-US"],
                "language_auto": {},
                "language_hints": {"language_codes": ["de-DE"]},
                "custom_vocabulary": ["Gemini"],
                "adaptation_phrases": ["ephemeral token"],
                "word_timestamp": True,
                "diarization": True,
                "mode": "smart",
                "source_text": "hello",
            },
            "output_audio_transcription": {},
            "realtime_input_config": {"interim_transcript_timestamp_enabled": True},
        }
    )
    assert setup["inputAudioTranscription"] == {
        "languageCodes": ["en-US"],
        "languageAuto": {},
        "languageHints": {"languageCodes": ["de-DE"]},
        "customVocabulary": ["Gemini"],
        "adaptationPhrases": ["ephemeral token"],
        "wordTimestamp": True,
        "diarization": True,
        "mode": "SMART",
        "sourceText": "hello",
    }
    assert setup["outputAudioTranscription"] == {}
    assert setup["realtimeInputConfig"] == {"interimTranscriptTimestampEnabled": True}


def test_part_fields_and_display_names() -> None:
    parts = [
        {"inline_data": {"mime_type": "image/png", "data": "iVBO", "display_name": "logo"}},
        {
            "file_data": {
                "file_uri": "files/abc",
                "mime_type": "application/pdf",
                "display_name": "d",
            }
        },
        {"function_call": {"id": "1", "name": "lookup", "args": {"city_name": "Oslo"}}},
        {
            "function_response": {
                "name": "lookup",
                "response": {"temp_c": 3},
                "scheduling": "silent",
            }
        },
        {"executable_code": {"code": "print(1)", "language": "python"}},
        {"code_execution_result": {"outcome": "ok", "output": "1"}},
        {"text": "t", "thought": True, "thought_signature": "c2ln"},
        {"video_metadata": {"start_offset": "1s", "end_offset": "2.5s", "fps": 2.0}},
        {"media_resolution": {"level": "ultra_high", "num_tokens": 64}},
        {"part_metadata": {"my_key": {"nested_key": 1}}},
        {"document_metadata": {"start_page": 1, "end_page": 2}},
        {"spreadsheet_metadata": {"visible_cells": "A1:B2", "sheet_index": 0}},
        {"audio_metadata": {"start_offset": "0s", "end_offset": "3s"}},
    ]
    sent = setup_of({"system_instruction": {"parts": parts, "role": "user"}})["systemInstruction"]
    assert sent == {
        "role": "user",
        "parts": [
            {"inlineData": {"mimeType": "image/png", "data": "iVBO", "displayName": "logo"}},
            {
                "fileData": {
                    "fileUri": "files/abc",
                    "mimeType": "application/pdf",
                    "displayName": "d",
                }
            },
            {"functionCall": {"id": "1", "name": "lookup", "args": {"city_name": "Oslo"}}},
            {
                "functionResponse": {
                    "name": "lookup",
                    "response": {"temp_c": 3},
                    "scheduling": "SILENT",
                }
            },
            {"executableCode": {"code": "print(1)", "language": "PYTHON"}},
            {"codeExecutionResult": {"outcome": "OUTCOME_OK", "output": "1"}},
            {"text": "t", "thought": True, "thoughtSignature": "c2ln"},
            {"videoMetadata": {"startOffset": "1s", "endOffset": "2.5s", "fps": 2.0}},
            {"mediaResolution": {"level": "MEDIA_RESOLUTION_ULTRA_HIGH", "numTokens": 64}},
            {"partMetadata": {"my_key": {"nested_key": 1}}},
            {"documentMetadata": {"startPage": 1, "endPage": 2}},
            {"spreadsheetMetadata": {"visibleCells": "A1:B2", "sheetIndex": 0}},
            {"audioMetadata": {"startOffset": "0s", "endOffset": "3s"}},
        ],
    }


@pytest.mark.parametrize(
    ("instruction", "parts"),
    [
        ("Be brief.", [{"text": "Be brief."}]),
        (["Be brief.", "Be kind."], [{"text": "Be brief."}, {"text": "Be kind."}]),
        (["Be brief.", {"text": "Be kind."}], [{"text": "Be brief."}, {"text": "Be kind."}]),
        ({"text": "Be brief."}, [{"text": "Be brief."}]),
        (Part(text="Be brief."), [{"text": "Be brief."}]),
        ([Part(text="a"), "b"], [{"text": "a"}, {"text": "b"}]),
    ],
    ids=["string", "strings", "strings-and-parts", "part-dict", "part", "parts"],
)
def test_system_instruction_shorthands(instruction: Any, parts: list[Any]) -> None:
    assert setup_of({"system_instruction": instruction})["systemInstruction"] == {
        "parts": parts,
        "role": "user",
    }


def test_a_whole_content_keeps_its_role() -> None:
    content = {"parts": [{"text": "x"}], "role": "model"}
    assert setup_of({"system_instruction": content})["systemInstruction"] == content


def test_a_bad_item_in_a_system_instruction_list_is_named() -> None:
    error = refused({"system_instruction": ["ok", {"txt": "typo"}]})
    assert error.field == "live_connect_constraints.config.system_instruction[1].txt"


def test_generation_config_can_be_locked_by_name() -> None:
    request = build_request(
        live_connect_constraints={"model": MODEL, "config": {"temperature": 0.5}},
        lock_additional_fields=["generation_config"],
    )
    assert body_for(request)["fieldMask"].split(",") == [
        "model",
        "generationConfig.temperature",
        "generationConfig",
    ]


# -- fields the official SDK refuses for the Developer API -------------------------------------

REFUSALS: list[tuple[dict[str, Any], str, str]] = [
    ({"explicit_vad_signal": True}, "explicit_vad_signal", "Vertex AI"),
    ({"session_resumption": {"transparent": True}}, "session_resumption.transparent", "Vertex AI"),
    (
        {"safety_settings": [{"category": "harassment", "method": "severity"}]},
        "safety_settings[0].method",
        "Vertex AI",
    ),
    ({"tools": [{"retrieval": {}}]}, "tools[0].retrieval", "Vertex AI"),
    ({"tools": [{"enterprise_web_search": {}}]}, "tools[0].enterprise_web_search", "Vertex AI"),
    ({"tools": [{"parallel_ai_search": {}}]}, "tools[0].parallel_ai_search", "Vertex AI"),
    ({"tools": [{"exa_ai_search": {}}]}, "tools[0].exa_ai_search", "Vertex AI"),
    (
        {"tools": [{"google_search": {"exclude_domains": ["a.example"]}}]},
        "tools[0].google_search.exclude_domains",
        "Vertex AI",
    ),
    (
        {"tools": [{"google_search": {"blocking_confidence": "BLOCK_LOW"}}]},
        "tools[0].google_search.blocking_confidence",
        "Vertex AI",
    ),
    (
        {"tools": [{"google_maps": {"grounding_types": {}}}]},
        "tools[0].google_maps.grounding_types",
        "Vertex AI",
    ),
    (
        {"tools": [{"google_maps": {"auth_config": {"api_key": "secret-maps-key"}}}]},
        "tools[0].google_maps.auth_config",
        "travel with the token",
    ),
    (
        {"speech_config": {"multi_speaker_voice_config": {"speaker_voice_configs": []}}},
        "speech_config.multi_speaker_voice_config",
        "not supported in the Live API",
    ),
    (
        {"sessionResumption": {"transparent": True}},
        "sessionResumption.transparent",
        "Vertex AI",
    ),
]


@pytest.mark.parametrize(("config", "field", "reason"), REFUSALS, ids=[r[1] for r in REFUSALS])
async def test_vertex_only_fields_are_refused_before_sending(
    server: RecordingServer, config: dict[str, Any], field: str, reason: str
) -> None:
    async with gemini_tokens.AsyncClient(API_KEY, base_url=server.base_url) as client:
        with pytest.raises(ValidationError, match=reason) as info:
            await client.create(live_connect_constraints={"model": MODEL, "config": config})
    assert info.value.field == f"live_connect_constraints.config.{field}"
    assert "is not supported" in str(info.value)
    assert "secret-maps-key" not in str(info.value)
    assert server.requests == []


def test_refused_fields_set_on_model_instances_are_refused_too() -> None:
    config = LiveConnectConfig(
        session_resumption=gemini_tokens.SessionResumptionConfig(transparent=True)
    )
    with pytest.raises(ValidationError, match="Vertex AI") as info:
        build_request(live_connect_constraints=LiveConnectConstraints(model="m", config=config))
    assert info.value.field == "live_connect_constraints.config.session_resumption.transparent"


def test_every_refusal_is_tested() -> None:
    tested = {field.rsplit(".", 1)[-1].split("[")[0] for _, field, _ in REFUSALS}
    assert {name for _, name in REFUSED} <= tested | {"partial_args"}


def test_partial_args_is_refused() -> None:
    error = refused(
        {"system_instruction": {"parts": [{"function_call": {"name": "f", "partial_args": []}}]}}
    )
    assert "Vertex AI" in str(error)
