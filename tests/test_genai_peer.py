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

genai = pytest.importorskip("google.genai")
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
