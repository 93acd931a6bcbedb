"""The official ``google-genai`` SDK, a peer client we did not write, against the emulator.

It mints a token from the emulator and opens a Live session with it exactly as it would
against the service: over https and wss (it always uses ``wss://`` for Live), trusting the
throwaway CA through ``SSL_CERT_FILE``, sending the token as ``Authorization: Token ...``,
its messages in snake_case, and to ``//ws/...`` when the base URL ends in a slash.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gemini_tokens.testing import Emulator

genai = pytest.importorskip("google.genai", reason="needs google-genai: pip install -e '.[test]'")
from google.genai import errors  # noqa: E402

pytestmark = [
    # The SDK flags its own token support as experimental ...
    pytest.mark.filterwarnings(
        "ignore:The SDK.s (token creation implementation|ephemeral token support)"
    ),
    # ... and subclasses aiohttp's ClientSession, which aiohttp discourages.
    pytest.mark.filterwarnings(
        "ignore:Inheritance class AiohttpClientSession from ClientSession:DeprecationWarning"
    ),
]

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"


def _token_config(**overrides: Any) -> dict[str, Any]:
    now = dt.datetime.now(dt.timezone.utc)
    config: dict[str, Any] = {
        "uses": 1,
        "expire_time": now + dt.timedelta(minutes=30),
        "new_session_expire_time": now + dt.timedelta(minutes=1),
        "live_connect_constraints": {
            "model": MODEL,
            "config": {"response_modalities": ["TEXT"], "temperature": 0.4},
        },
    }
    config.update(overrides)
    return config


@pytest.mark.parametrize("slash", ["", "/"], ids=["base", "base-with-slash"])
async def test_genai_mints_and_opens_a_live_session(
    slash: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Emulator(tls=True) as emu:
        monkeypatch.setenv("SSL_CERT_FILE", emu.ca_file)  # read when a genai.Client is made
        http_options = {"base_url": emu.base_url + slash, "api_version": "v1alpha"}

        minting = genai.Client(api_key=emu.api_key, http_options=http_options)
        try:
            token = await minting.aio.auth_tokens.create(
                config=_token_config(lock_additional_fields=[])  # lock what is set
            )
        finally:
            await minting.aio.aclose()
        assert token.name.startswith("auth_tokens/")
        issued = emu.token(token.name)
        assert issued is not None
        assert issued.setup == {
            "model": f"models/{MODEL}",
            "generationConfig": {"responseModalities": ["TEXT"], "temperature": 0.4},
        }
        assert issued.field_mask == (
            "model",
            "generationConfig.responseModalities",
            "generationConfig.temperature",
        )

        live = genai.Client(api_key=token.name, http_options=http_options)
        try:
            config = {"response_modalities": ["AUDIO"], "temperature": 0.9, "top_p": 0.5}
            async with live.aio.live.connect(model="gemini-other", config=config) as session:
                assert session.session_id == emu.sessions[-1].session_id
                await session.send_client_content(
                    turns={"role": "user", "parts": [{"text": "Hello"}]}, turn_complete=True
                )
                texts = [msg.text async for msg in session.receive() if msg.text]
            # The token's locks win over the SDK's config; the unlocked rest is the client's.
            assert texts == [
                f'Emulator reply to "Hello" with model=models/{MODEL}, modalities=TEXT, '
                "temperature=0.4."
            ]
            served = emu.sessions[-1]
            assert served.token_name == token.name
            assert served.method == "BidiGenerateContentConstrained"
            assert served.setup is not None
            assert served.setup["generationConfig"]["topP"] == 0.5  # not locked: the client's
            assert emu.requests[-1].headers["Authorization"] == f"Token {token.name}"

            # The token's single use is spent: the SDK surfaces the service's close.
            with pytest.raises(errors.APIError) as info:
                async with live.aio.live.connect(model="gemini-other", config=config):
                    pass
            assert info.value.code == 1011
            assert "Token has been used too many times" in str(info.value)
        finally:
            await live.aio.aclose()


def test_genai_sync_client_mints_from_the_threaded_emulator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with Emulator.running(tls=True) as emu:
        monkeypatch.setenv("SSL_CERT_FILE", emu.ca_file)
        client = genai.Client(
            api_key=emu.api_key,
            http_options={"base_url": emu.base_url, "api_version": "v1alpha"},
        )
        try:
            token = client.auth_tokens.create(config=_token_config(uses=3))
            assert token.uses == 3
            assert emu.token(token.name) is not None
            with pytest.raises(errors.ClientError) as info:
                client.auth_tokens.create(config=_token_config(uses=-1))
            assert info.value.code == 400
        finally:
            client.close()

        bad = genai.Client(
            api_key="wrong", http_options={"base_url": emu.base_url, "api_version": "v1alpha"}
        )
        try:
            with pytest.raises(errors.ClientError) as info:
                bad.auth_tokens.create(config=_token_config())
            assert info.value.code == 400
            assert info.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
        finally:
            bad.close()


async def test_genai_snake_case_lock_paths_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK sends ``lock_additional_fields=["top_p"]`` as ``generationConfig.top_p``.

    The service's proto-JSON parser (like protobuf's C++ and Java converters) reads a FieldMask
    path segment in snake_case as well as lowerCamelCase, so SDK users who lock fields this
    way are not refused; the emulator keeps the canonical path (wire.md: ``topP``).
    """
    async with Emulator(tls=True) as emu:
        monkeypatch.setenv("SSL_CERT_FILE", emu.ca_file)
        client = genai.Client(
            api_key=emu.api_key,
            http_options={"base_url": emu.base_url, "api_version": "v1alpha"},
        )
        try:
            token = await client.aio.auth_tokens.create(
                config=_token_config(lock_additional_fields=["top_p"])
            )
        finally:
            await client.aio.aclose()
    assert token.name is not None
    assert token.name.startswith("auth_tokens/")
    (issued,) = emu.tokens
    assert issued.field_mask is not None
    assert "generationConfig.topP" in issued.field_mask
    sent = emu.requests[-1].body
    assert "generationConfig.top_p" in sent["fieldMask"]  # what the SDK really sent


# -- differential: the same options, google-genai's body and ours --------------------------------

#: The issue names 3.6.1: older SDKs sent lower-case enum values and refused these fields.
GENAI_DIFF = pytest.mark.skipif(
    tuple(int(p) for p in genai.__version__.split(".")[:3] if p.isdigit()) < (3, 6, 1),
    reason="needs google-genai >= 3.6.1, which needs Python 3.11 or newer",
)

#: Configs written as a google-genai user would (snake_case, lower-case enum values).
DIFF_CONFIGS: list[dict[str, Any]] = [
    {"response_modalities": ["audio"], "temperature": 0.7, "top_k": 3},
    {
        "thinking_config": {"thinking_level": "low"},
        "realtime_input_config": {
            "activity_handling": "no_interruption",
            "turn_coverage": "turn_includes_all_input",
            "automatic_activity_detection": {
                "start_of_speech_sensitivity": "start_sensitivity_low",
                "end_of_speech_sensitivity": "end_sensitivity_high",
            },
        },
        "safety_settings": [{"category": "harm_category_harassment", "threshold": "block_none"}],
    },
    {
        "tools": [
            {"google_search": {"search_types": {"web_search": {}}}},
            {"google_maps": {"enable_widget": True}},
            {"url_context": {}},
            {"code_execution": {}},
            {"computer_use": {"environment": "environment_browser"}},
            {"file_search": {"file_search_store_names": ["fileSearchStores/a"], "top_k": 3}},
            {"function_declarations": [{"name": "f", "behavior": "non_blocking"}]},
        ]
    },
    {"system_instruction": ["Be brief.", {"text": "Be kind."}]},
    {"system_instruction": "Be brief."},
    {
        "speech_config": {"voice_config": {"voice": "Kore"}},
        "input_audio_transcription": {
            "diarization": True,
            "language_codes": ["en-US"],
            "mode": "verbatim",
            "custom_vocabulary": ["Gemini"],
        },
        "output_audio_transcription": {},
        "realtime_input_config": {"interim_transcript_timestamp_enabled": True},
    },
    {"avatar_config": {"avatar_name": "ava", "audio_bitrate_bps": 32000}},
    {"media_resolution": "media_resolution_low", "session_resumption": {}},
    {
        "context_window_compression": {
            "trigger_tokens": 25600,
            "sliding_window": {"target_tokens": 12800},
        },
        "proactivity": {"proactive_audio": True},
    },
]


def _camel_keys(value: Any) -> Any:
    """Every dict key in camelCase: the form the service reads both spellings as."""
    from gemini_tokens._naming import camel

    if isinstance(value, dict):
        return {camel(key): _camel_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_camel_keys(item) for item in value]
    return value


def _genai_body(server: Any, model: str, config: dict[str, Any]) -> dict[str, Any]:
    client = genai.Client(
        api_key="k", http_options={"base_url": server.base_url, "api_version": "v1alpha"}
    )
    client.auth_tokens.create(
        config={
            "uses": 1,
            "live_connect_constraints": {"model": model, "config": config},
            "lock_additional_fields": [],
        }
    )
    body: dict[str, Any] = server.last_body
    return body


def _our_body(server: Any, model: str, config: dict[str, Any]) -> dict[str, Any]:
    from gemini_tokens import Client

    with Client("k", base_url=server.base_url) as client:
        client.create(
            uses=1,
            live_connect_constraints={"model": model, "config": config},
            lock_additional_fields=[],
        )
    body: dict[str, Any] = server.last_body
    return body


@GENAI_DIFF
@pytest.mark.parametrize("config", DIFF_CONFIGS, ids=[next(iter(c)) for c in DIFF_CONFIGS])
def test_our_setup_is_what_genai_sends_in_canonical_form(
    server: Any, config: dict[str, Any]
) -> None:
    """The same options give the same setup, ours canonical (camelCase keys everywhere).

    google-genai leaves nested keys in snake_case (which the service also reads); ours are
    camelCase. Enum values are the same UPPER_CASE names. The masks lock the same top-level
    fields (google-genai lists some two levels deep, ours every object two levels deep).
    """
    theirs = _genai_body(server, MODEL, config)
    ours = _our_body(server, MODEL, config)
    ours_setup = ours["bidiGenerateContentSetup"]
    assert _camel_keys(ours_setup) == ours_setup
    assert ours_setup == _camel_keys(theirs["bidiGenerateContentSetup"])
    assert ours["uses"] == theirs["uses"]

    def top(mask: str) -> set[str]:
        return {path.split(".")[0] for path in mask.split(",")}

    assert top(ours["fieldMask"]) == top(theirs["fieldMask"])


@GENAI_DIFF
@pytest.mark.parametrize("model", ["tunedModels/my-live-tune", "gemini-x", "models/gemini-x"])
def test_model_names_as_genai_sends_them(server: Any, model: str) -> None:
    theirs = _genai_body(server, model, {})["bidiGenerateContentSetup"]["model"]
    assert _our_body(server, model, {})["bidiGenerateContentSetup"]["model"] == theirs


@GENAI_DIFF
@pytest.mark.parametrize("model", ["gemini?key=x", "a&b", "models/../x"])
def test_model_names_genai_refuses_we_refuse(server: Any, model: str) -> None:
    from gemini_tokens import Client, ValidationError

    with pytest.raises(ValueError, match="invalid model"):
        _genai_body(server, model, {})
    with Client("k", base_url=server.base_url) as client, pytest.raises(ValidationError):
        client.create(live_connect_constraints={"model": model})
    assert server.requests == []


#: Configs google-genai refuses for the Developer API; we refuse them too.
GENAI_REFUSES: list[dict[str, Any]] = [
    {"explicit_vad_signal": True},
    {"session_resumption": {"transparent": True}},
    {"safety_settings": [{"category": "harm_category_harassment", "method": "severity"}]},
    {"tools": [{"retrieval": {}}]},
    {"tools": [{"enterprise_web_search": {}}]},
    {"tools": [{"google_search": {"exclude_domains": ["a.example"]}}]},
]


@GENAI_DIFF
@pytest.mark.parametrize("config", GENAI_REFUSES, ids=[str(c)[:40] for c in GENAI_REFUSES])
def test_fields_genai_refuses_we_refuse(server: Any, config: dict[str, Any]) -> None:
    from gemini_tokens import Client, ValidationError

    with pytest.raises(ValueError, match="only supported in Gemini Enterprise"):
        _genai_body(server, MODEL, config)
    with (
        Client("k", base_url=server.base_url) as client,
        pytest.raises(ValidationError, match="Vertex AI"),
    ):
        client.create(live_connect_constraints={"model": MODEL, "config": config})
    assert server.requests == []
