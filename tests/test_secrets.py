"""The API key and tokens' names never show in a repr, a str, a log record or an exception.

The fault server here is hostile: besides every fault of `ALL_FAULTS`, it echoes the API key
and the name of a token it minted earlier in messages, reasons, HTML pages, broken JSON,
headers and malformed header lines. Everything a user could print or log is then scanned.
"""

from __future__ import annotations

import logging
import pickle
import traceback
from collections.abc import Callable, Iterable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gemini_tokens import (
    APIError,
    AsyncClient,
    Client,
    EphemeralToken,
    GeminiTokensError,
    RetryPolicy,
    Timeout,
)
from gemini_tokens._errors import _MIN_FRAGMENT, redact_secrets

from .conftest import API_KEY
from .fault_server import (  # noqa: F401  (fixtures)
    ALL_FAULTS,
    Action,
    Exchange,
    FaultServer,
    error_info,
    faults_fixture,
    json_reply,
    raw,
    rpc_status,
)

POLICY = RetryPolicy(max_retries=1, initial_backoff=0.001, max_backoff=0.001)
TIMEOUT = Timeout(connect=0.5, total=0.3)


def malformed_header(text: str) -> Action:
    """A response whose header block is broken, with ``text`` in the broken line."""

    async def action(ex: Exchange) -> bool:
        await ex.send(f"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n{text}\r\n\r\n{{}}".encode())
        return False

    return action


def malformed_status(text: str) -> Action:
    async def action(ex: Exchange) -> bool:
        await ex.send(f"HTTP/1.1 2{text} OK\r\nContent-Length: 2\r\n\r\n{{}}".encode())
        return False

    return action


def hostile_faults(name: str) -> dict[str, Callable[[], Action]]:
    """Faults whose answers carry the API key and the token name ``name``."""
    both = f"key={API_KEY} token={name}"
    return {
        "message": lambda: rpc_status(400, message=f"API key {API_KEY} not valid; {name} used"),
        "reason": lambda: rpc_status(403, details=[error_info(f"NO_{API_KEY}_{name}")]),
        "status": lambda: rpc_status(503, status=f"UNAVAILABLE {both}"),
        "long-message": lambda: rpc_status(429, message="x" * 490 + both),
        "html": lambda: raw(502, f"<html>{both}</html>".encode(), content_type="text/html"),
        "content-type": lambda: raw(502, b"<html></html>", content_type=f"text/html; {both}"),
        "broken-json": lambda: raw(500, f'{{"error": "{both}"'.encode()),
        # The message quotes 200 characters of such a body: the cut falls inside the key.
        "broken-json-at-the-cut": lambda: raw(500, ("x" * 185 + both).encode()),
        "empty-with-headers": lambda: raw(503, b"", headers={"X-Echo": both, "Retry-After": both}),
        "200-echo-without-name": lambda: json_reply(200, {"error": both, "token": name}),
        "200-html": lambda: raw(200, f"<p>{both}</p>".encode(), content_type="text/html"),
        "malformed-header": lambda: malformed_header(f"Broken {both}"),
        "malformed-header-value": lambda: malformed_header(f"X-Echo: {both}\x01"),
        "malformed-status": lambda: malformed_status(both),
    }


def exception_texts(exc: BaseException) -> Iterator[str]:
    """Everything a logger or error tracker may render from ``exc`` and its whole chain."""
    yield "".join(traceback.format_exception(exc))
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield repr(current.args)
        yield repr(vars(current))
        if isinstance(current, GeminiTokensError):  # what crosses to another process
            yield pickle.dumps(current).decode("latin-1")
        # Even a context suppressed by ``from None`` is reachable, so it is scanned too.
        current = current.__cause__ or current.__context__


def record_texts(records: Iterable[logging.LogRecord]) -> Iterator[str]:
    formatter = logging.Formatter()
    for record in records:
        yield formatter.format(record)
        yield repr(vars(record))


def assert_no_secret(texts: Iterable[str], secrets: Iterable[str]) -> None:
    texts = list(texts)
    assert texts
    for secret in secrets:
        for text in texts:
            assert secret not in text, f"secret leaked into: {text[:300]!r}"


def secrets_of(server: FaultServer) -> list[str]:
    """The key and every token name handed out, whole and in halves (a cut secret leaks too)."""
    names = list(server.issued_names)
    assert names
    whole = [API_KEY, *(n.removeprefix("auth_tokens/") for n in names)]
    return [*whole, *(w[: len(w) // 2] for w in whole), *(w[len(w) // 2 :] for w in whole)]


async def test_async_client_leaks_nothing_through_every_fault(
    faults: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every level
    texts: list[str] = []
    outcomes: dict[str, str] = {}
    async with AsyncClient(
        API_KEY, base_url=faults.base_url, retry=POLICY, timeout=TIMEOUT
    ) as client:
        texts += [repr(client), str(client)]
        minted = await client.create()
        texts += [repr(minted), str(minted)]
        scenarios = {**ALL_FAULTS, **hostile_faults(minted.name)}
        for label, make in scenarios.items():
            faults.default = make()
            try:
                # The deadline only guards the test: a hint longer than it is raised at once.
                result = await client.create(deadline=10)
            except APIError as exc:
                outcomes[label] = type(exc).__name__
                texts += exception_texts(exc)
            else:  # pragma: no cover - every scenario is a fault
                outcomes[label] = "token"
                texts += [repr(result), str(result)]
    texts += record_texts(caplog.records)

    # Every scenario really failed, and the server really sent the secrets to the client.
    assert set(outcomes) == set(scenarios)
    assert "token" not in outcomes.values()
    assert any(r.name == "gemini_tokens" for r in caplog.records)  # retries were logged
    assert_no_secret(texts, secrets_of(faults))


def test_the_hostile_server_really_sends_the_secrets(faults: FaultServer) -> None:
    """So the scans above would catch a leak: every hostile answer carries both secrets."""
    name = "auth_tokens/abcDEF123"
    scenarios = hostile_faults(name)
    for make in scenarios.values():
        faults.default = make()
        # A client per answer: with max_retries=0, a keep-alive connection that the previous
        # hostile answer left half-closed would fail before reaching the server.
        with Client(API_KEY, base_url=faults.base_url) as client, pytest.raises(APIError):
            client.create(max_retries=0)
    assert faults.attempts == len(scenarios)
    for request in faults.requests:
        answer = bytes(faults.sent[request.index])
        assert API_KEY.encode() in answer
        assert name.encode() in answer
        assert request.headers["x-goog-api-key"] == API_KEY  # and the key did travel


def test_sync_client_and_its_tokens_leak_nothing(
    faults: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with Client(API_KEY, base_url=faults.base_url, timeout=TIMEOUT, max_retries=1) as client:
        texts += [repr(client), str(client)]
        minted = client.create(live_connect_constraints={"model": "gemini-live-2.5-flash"})
        assert isinstance(minted, EphemeralToken)
        texts += [repr(minted), str(minted), repr(minted.live_connect_constraints)]
        for make in hostile_faults(minted.name).values():
            faults.default = make()
            with pytest.raises(APIError) as caught:
                client.create(deadline=10)
            texts += exception_texts(caught.value)
    texts += record_texts(caplog.records)
    assert_no_secret(texts, secrets_of(faults))


def test_redaction_of_a_token_name_keeps_the_message_useful() -> None:
    from gemini_tokens._errors import error_from_response, redact_secrets

    assert redact_secrets("token auth_tokens/a-b_c.d used up, key k1", ("k1",)) == (
        "token auth_tokens/*** used up, key ***"
    )
    exc = error_from_response(
        400, b'{"error": {"message": "auth_tokens/xyz: too many uses", "status": "X"}}'
    )
    assert str(exc) == "400 X: auth_tokens/***: too many uses"


# --- a secret cut short (issue 11.6) --------------------------------------------------------

_KEY_CHARS = st.characters(min_codepoint=33, max_codepoint=126)  # printable ASCII, as keys are


@given(
    key=st.text(_KEY_CHARS, min_size=_MIN_FRAGMENT, max_size=60),
    cut=st.data(),
    before=st.text(max_size=40),
    after=st.text(max_size=40),
)
def test_a_key_cut_short_at_either_end_is_redacted(
    key: str, cut: st.DataObject, before: str, after: str
) -> None:
    """Any run of >= _MIN_FRAGMENT characters of the key, wherever it was cut, is blanked."""
    start = cut.draw(st.integers(0, len(key) - _MIN_FRAGMENT), label="start")
    end = cut.draw(st.integers(start + _MIN_FRAGMENT, len(key)), label="end")
    fragment = key[start:end]
    redacted = redact_secrets(before + fragment + after, (key,))
    assert fragment not in redacted
    assert "***" in redacted
    for i in range(len(key) - _MIN_FRAGMENT + 1):  # no telling run of the key is left
        assert key[i : i + _MIN_FRAGMENT] not in redacted


@given(key=st.text(_KEY_CHARS, min_size=_MIN_FRAGMENT, max_size=60), text=st.text(max_size=80))
def test_text_sharing_no_telling_run_with_the_key_is_left_alone(key: str, text: str) -> None:
    runs = {key[i : i + _MIN_FRAGMENT] for i in range(len(key) - _MIN_FRAGMENT + 1)}
    if any(run in text for run in runs) or "auth_tokens/" in text:
        return  # (rare) the text does hold a part of the key: the test above covers it
    assert redact_secrets(text, (key,)) == text


def test_short_runs_of_the_key_stay_readable() -> None:
    key = "AIzaSyD-SECRETKEY1234567890abcdefghijk"
    short = key[: _MIN_FRAGMENT - 1]  # "AIzaSyD": every key's prefix looks alike
    assert redact_secrets(f"a header {short}... was cut", (key,)) == f"a header {short}... was cut"
    assert redact_secrets(f"x {key[:9]}... y {key[-9:]}", (key,)) == "x ***... y ***"
    assert redact_secrets(f"{key}{key[:20]}", (key,)) == "******"


def overlong_header(text: str) -> Action:
    """A header line over aiohttp's 8190-byte limit: its error quotes the first 100 bytes."""

    async def action(ex: Exchange) -> bool:
        line = f"X-Echo: {text}{'b' * 9000}"
        await ex.send(f"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n{line}\r\n\r\n{{}}".encode())
        return False

    return action


@pytest.mark.parametrize("kept", range(_MIN_FRAGMENT, len(API_KEY) + 1, 3))
def test_a_key_in_an_overlong_header_line_cut_by_aiohttp_is_redacted(
    faults: FaultServer, kept: int
) -> None:
    """aiohttp's message ends mid-key ('...aaaaAIzaSECRETKEY12...'): none of it shows."""
    # The C parser quotes from the value, the pure-Python one from the header's name: pad so
    # that `kept` characters of the key come before the 100-byte cut with the C parser.
    faults.default = overlong_header("a" * (100 - kept) + API_KEY)
    with (
        Client(API_KEY, base_url=faults.base_url, max_retries=0) as client,
        pytest.raises(APIError) as caught,
    ):
        client.create()
    texts = list(exception_texts(caught.value))
    assert any("8190" in text for text in texts)  # it is aiohttp's line-too-long message
    runs = [API_KEY[i : i + _MIN_FRAGMENT] for i in range(len(API_KEY) - _MIN_FRAGMENT + 1)]
    assert_no_secret(texts, runs)
