"""TLS trust (issue #11.9) and certificate failures (#11.10).

Trust is read when a client is made: ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` set after
``import aiohttp`` (which builds aiohttp's own default context) are honoured, and both
clients take ``verify=`` in httpx's shape. A certificate that cannot be verified fails at
once with `CertificateVerificationError`, never retried. Servers: the emulator with TLS
(a throwaway CA for 127.0.0.1), and the fault server with ``trustme`` certificates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pathlib
import shutil
import ssl
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import trustme

from gemini_tokens import (
    APIConnectionError,
    AsyncClient,
    CertificateVerificationError,
    Client,
    ConfigurationError,
    RetryPolicy,
)
from gemini_tokens._retry import is_retryable
from gemini_tokens.testing import Emulator

from .conftest import API_KEY
from .fault_server import FaultServer, no_leaked_threads_or_finalizer_errors

FAST = RetryPolicy(max_retries=2, initial_backoff=0.0, max_backoff=0.0)


@pytest.fixture(autouse=True)
def _no_trust_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(tls=True) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def other_ca() -> trustme.CA:
    """A CA no client here trusts."""
    return trustme.CA()


def tls_faults(ca: trustme.CA, *hosts: str) -> FaultServer:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*hosts).configure_cert(ctx)
    return FaultServer(tls=ctx)


@pytest.fixture
def untrusted(other_ca: trustme.CA) -> Iterator[FaultServer]:
    """A TLS token server whose certificate (for 127.0.0.1) is signed by `other_ca`."""
    with tls_faults(other_ca, "127.0.0.1") as server, no_leaked_threads_or_finalizer_errors():
        yield server


# --- trust read when the client is made ------------------------------------------------------


async def test_ssl_cert_file_set_after_aiohttp_import_is_honoured(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "aiohttp" in sys.modules  # its default context was built long ago
    with pytest.raises(CertificateVerificationError):
        async with AsyncClient(emu.api_key, base_url=emu.base_url, retry=FAST) as client:
            await client.create()
    monkeypatch.setenv("SSL_CERT_FILE", emu.ca_file)
    async with AsyncClient(emu.api_key, base_url=emu.base_url) as client:
        token = await client.create()
    assert emu.token(token.name) is not None


@pytest.mark.skipif(
    shutil.which("openssl") is None,
    reason="needs the openssl command to hash a CA directory: apt-get install openssl",
)
async def test_ssl_cert_dir_set_after_aiohttp_import_is_honoured(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    shutil.copy(emu.ca_file, tmp_path / "emulator-ca.pem")
    rehash = await asyncio.create_subprocess_exec(
        "openssl", "rehash", str(tmp_path), stdout=asyncio.subprocess.DEVNULL
    )
    assert await rehash.wait() == 0
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    async with AsyncClient(emu.api_key, base_url=emu.base_url) as client:
        token = await client.create()
    assert emu.token(token.name) is not None
    # The same directory as verify=.
    monkeypatch.delenv("SSL_CERT_DIR")
    async with AsyncClient(emu.api_key, base_url=emu.base_url, verify=str(tmp_path)) as client:
        await client.create()


def test_ssl_cert_file_honoured_by_the_sync_client(monkeypatch: pytest.MonkeyPatch) -> None:
    with Emulator.running(tls=True) as emulator:
        monkeypatch.setenv("SSL_CERT_FILE", emulator.ca_file)
        with Client(emulator.api_key, base_url=emulator.base_url) as client:
            assert emulator.token(client.create().name) is not None


# --- verify= ------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["str", "path", "context"])
async def test_verify_takes_a_ca_bundle_path_or_a_context(emu: Emulator, form: str) -> None:
    verify: Any = {
        "str": emu.ca_file,
        "path": pathlib.Path(emu.ca_file),
        "context": emu.ssl_context(),
    }[form]
    async with AsyncClient(emu.api_key, base_url=emu.base_url, verify=verify) as client:
        token = await client.create()
    assert emu.token(token.name) is not None


def test_sync_client_takes_verify() -> None:
    with Emulator.running(tls=True) as emulator:
        for verify in (emulator.ca_file, emulator.ssl_context()):
            with Client(emulator.api_key, base_url=emulator.base_url, verify=verify) as client:
                assert emulator.token(client.create().name) is not None


async def test_verify_false_skips_verification(emu: Emulator) -> None:
    async with AsyncClient(emu.api_key, base_url=emu.base_url, verify=False) as client:
        await client.create()


async def test_a_ca_bundle_replaces_the_system_trust(
    emu: Emulator, other_ca: trustme.CA, tmp_path: pathlib.Path
) -> None:
    """verify=path trusts that bundle only (as httpx): another CA's file does not help."""
    bundle = tmp_path / "other.pem"
    other_ca.cert_pem.write_to_path(str(bundle))
    async with AsyncClient(
        emu.api_key, base_url=emu.base_url, verify=str(bundle), retry=FAST
    ) as client:
        with pytest.raises(CertificateVerificationError):
            await client.create()


@pytest.mark.parametrize(
    ("verify", "message"),
    [
        ("/nonexistent/ca.pem", "verify names a CA bundle that does not exist"),
        ("", "verify must be a non-empty path"),
        (1, "verify must be True"),
        (0, "verify must be True"),
        (b"/etc/ssl/ca.pem", "verify must be True"),
    ],
)
def test_a_bad_verify_is_refused(verify: Any, message: str) -> None:
    for make in (AsyncClient, Client):
        with pytest.raises(ConfigurationError, match=f"^{message}"):
            make(API_KEY, verify=verify)


def test_a_file_that_is_not_a_ca_bundle_is_refused(tmp_path: pathlib.Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigurationError, match=r"^verify: the CA bundle .* cannot be loaded"):
        AsyncClient(API_KEY, verify=str(junk))


def test_a_rewritten_bundle_is_read_again(other_ca: trustme.CA, tmp_path: pathlib.Path) -> None:
    """The context cache is keyed on the file's stamp, so a rewritten bundle is read anew."""
    path = tmp_path / "ca.pem"
    path.write_text("not yet\n")
    with pytest.raises(ConfigurationError):
        AsyncClient(API_KEY, verify=str(path))
    other_ca.cert_pem.write_to_path(str(path))
    os.utime(path, ns=(1, 1))  # a different stamp, even within the clock's resolution
    AsyncClient(API_KEY, verify=str(path))


# --- certificate failures are typed, explained and not retried (#11.10) ----------------------


async def test_an_untrusted_certificate_fails_at_once(
    untrusted: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gemini_tokens")
    async with AsyncClient(API_KEY, base_url=untrusted.base_url, retry=FAST) as client:
        with pytest.raises(CertificateVerificationError) as caught:
            await client.create()
    error = caught.value
    assert isinstance(error, APIConnectionError)
    assert error.attempts == 1
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]
    assert untrusted.attempts == 0  # no request was sent
    text = str(error)
    assert "the TLS certificate of 127.0.0.1 could not be verified" in text
    assert "verify='/path/to/ca.pem'" in text
    assert "SSL_CERT_FILE" in text
    assert API_KEY not in text + repr(error)
    assert not is_retryable(error)


async def test_a_host_name_mismatch_fails_at_once(other_ca: trustme.CA, tmp_path: Any) -> None:
    bundle = tmp_path / "ca.pem"
    other_ca.cert_pem.write_to_path(str(bundle))
    with (
        tls_faults(other_ca, "somewhere.else") as server,
        no_leaked_threads_or_finalizer_errors(),
    ):
        async with AsyncClient(
            API_KEY, base_url=server.base_url, verify=str(bundle), retry=FAST
        ) as client:
            with pytest.raises(CertificateVerificationError, match="could not be verified"):
                await client.create()
        assert server.attempts == 0


def test_the_sync_client_fails_at_once_too(untrusted: FaultServer) -> None:
    with (
        Client(API_KEY, base_url=untrusted.base_url, retry=FAST) as client,
        pytest.raises(CertificateVerificationError) as caught,
    ):
        client.create()
    assert caught.value.attempts == 1


async def test_other_tls_failures_are_still_retried() -> None:
    """A server that answers a TLS hello in plain HTTP: an SSL error, but not a certificate
    one, so it is retried like any connection error."""
    connections = 0

    async def plain_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    server = await asyncio.start_server(plain_http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with AsyncClient(API_KEY, base_url=f"https://127.0.0.1:{port}", retry=FAST) as c:
            with pytest.raises(APIConnectionError) as caught:
                await c.create()
    finally:
        server.close()
        await server.wait_closed()
    assert not isinstance(caught.value, CertificateVerificationError)
    assert caught.value.attempts == 3
    assert connections == 3


# --- a shared session ---------------------------------------------------------------------


async def test_a_shared_sessions_connector_keeps_its_tls_settings(emu: Emulator) -> None:
    """Without verify=, a shared session's connector's own TLS settings apply (an app that
    trusts a private CA on its connector keeps doing so)."""
    connector = aiohttp.TCPConnector(ssl=emu.ssl_context())
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        AsyncClient(emu.api_key, base_url=emu.base_url, session=session) as client,
    ):
        await client.create()


async def test_verify_applies_on_a_shared_session_too(
    emu: Emulator, other_ca: trustme.CA, tmp_path: pathlib.Path
) -> None:
    bundle = tmp_path / "other.pem"
    other_ca.cert_pem.write_to_path(str(bundle))
    connector = aiohttp.TCPConnector(ssl=emu.ssl_context())
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        AsyncClient(
            emu.api_key, base_url=emu.base_url, session=session, verify=str(bundle), retry=FAST
        ) as client,
    ):
        with pytest.raises(CertificateVerificationError):
            await client.create()
    async with (
        aiohttp.ClientSession() as session,
        AsyncClient(
            emu.api_key, base_url=emu.base_url, session=session, verify=emu.ca_file
        ) as client,
    ):
        await client.create()
