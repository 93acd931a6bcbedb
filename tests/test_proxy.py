"""Proxies (issue #11.1) and the URL settings around them (#11.8: credentials in base_url).

The client targets ``https://gemini.invalid:<port>``: no resolver knows that name, and only
the test proxy maps it to 127.0.0.1, so a token minted there went through the proxy. The
TLS server's certificate is for that name, signed by a throwaway ``trustme`` CA. Where a
test needs to reach the name directly (a ``NO_PROXY`` bypass), its shared session resolves
it with `MapResolver`: no DNS query leaves the machine.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import trustme

import gemini_tokens
from gemini_tokens import (
    APIConnectionError,
    APIStatusError,
    AsyncClient,
    CertificateVerificationError,
    Client,
    ConfigurationError,
    ProxyAuthenticationError,
)
from gemini_tokens._config import check_proxy_url, resolve_proxy

from .conftest import API_KEY
from .connect_proxy import ConnectProxy, MapResolver, basic, proxy_fixture  # noqa: F401
from .fault_server import FaultServer, json_reply, no_leaked_threads_or_finalizer_errors

PROXY_VARS = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "REQUEST_METHOD",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)


@pytest.fixture(autouse=True)
def _no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets exactly the proxy variables it is about."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def tls_server(ca: trustme.CA, proxy: ConnectProxy) -> Iterator[FaultServer]:
    """A token server with a certificate for ``gemini.invalid`` (started after the proxy)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("gemini.invalid").configure_cert(ctx)
    with FaultServer(tls=ctx) as server, no_leaked_threads_or_finalizer_errors():
        yield server
        assert server.wait_until_idle(), f"{server.connections_open} connections left open"


@pytest.fixture
def plain_server(proxy: ConnectProxy) -> Iterator[FaultServer]:
    """A plain-http token server (started after the proxy)."""
    with FaultServer() as server, no_leaked_threads_or_finalizer_errors():
        yield server
        assert server.wait_until_idle(), f"{server.connections_open} connections left open"


def target(server: FaultServer) -> str:
    """The server's URL under the name only the proxy knows."""
    scheme = server.base_url.split(":", 1)[0]
    return f"{scheme}://gemini.invalid:{server.port}"


@pytest.fixture
async def resolving_session() -> AsyncIterator[aiohttp.ClientSession]:
    """A shared session whose pool resolves ``gemini.invalid`` to 127.0.0.1 (no DNS)."""
    connector = aiohttp.TCPConnector(resolver=MapResolver({"gemini.invalid": "127.0.0.1"}))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


# --- through the proxy ----------------------------------------------------------------------


@pytest.mark.parametrize("var", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"])
async def test_async_client_reaches_a_host_only_the_proxy_can_reach(
    var: str,
    proxy: ConnectProxy,
    tls_server: FaultServer,
    ca_file: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(var, proxy.url)
    async with AsyncClient(API_KEY, base_url=target(tls_server), verify=ca_file) as client:
        token = await client.create(uses=2)
        await client.create()  # the tunnel is pooled like any connection
    assert token.name.startswith("auth_tokens/")
    assert token.uses == 2
    assert proxy.connects == [f"gemini.invalid:{tls_server.port}"]
    first = tls_server.requests[0]
    assert first.headers["x-goog-api-key"] == API_KEY
    assert first.headers["host"] == f"gemini.invalid:{tls_server.port}"
    assert tls_server.attempts == 2


def test_sync_client_goes_through_https_proxy(
    proxy: ConnectProxy, tls_server: FaultServer, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    with Client(API_KEY, base_url=target(tls_server), verify=ca_file) as client:
        token = client.create()
    assert token.name.startswith("auth_tokens/")
    assert proxy.connects == [f"gemini.invalid:{tls_server.port}"]


def test_one_shot_create_uses_the_environment_proxy_and_ca(
    proxy: ConnectProxy, tls_server: FaultServer, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shared default client reads HTTPS_PROXY and SSL_CERT_FILE (set after aiohttp's
    import) when it is made."""
    assert "aiohttp" in sys.modules
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    monkeypatch.setenv("GEMINI_BASE_URL", target(tls_server))
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    gemini_tokens.close_default_client()
    try:
        token = gemini_tokens.create(uses=1)
    finally:
        gemini_tokens.close_default_client()
    assert token.name.startswith("auth_tokens/")
    assert proxy.connects == [f"gemini.invalid:{tls_server.port}"]


def test_cli_create_goes_through_https_proxy(
    proxy: ConnectProxy, tls_server: FaultServer, ca_file: str
) -> None:
    env = {
        **os.environ,
        "GEMINI_API_KEY": API_KEY,
        "GEMINI_BASE_URL": target(tls_server),
        "HTTPS_PROXY": proxy.url,
        "SSL_CERT_FILE": ca_file,
    }
    result = subprocess.run(
        [sys.executable, "-m", "gemini_tokens", "create", "--uses", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["name"].startswith("auth_tokens/")
    assert proxy.connects == [f"gemini.invalid:{tls_server.port}"]
    assert API_KEY not in result.stdout + result.stderr


async def test_http_proxy_forwards_an_http_target(
    proxy: ConnectProxy, plain_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An http:// base URL uses HTTP_PROXY (an absolute-form request, no tunnel)."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # not for http:// targets
    url = target(plain_server)
    async with AsyncClient(API_KEY, base_url=url, allow_insecure_http=True) as client:
        await client.create()
    assert proxy.forwarded == [f"{url}/v1alpha/auth_tokens"]
    assert plain_server.requests[0].headers["x-goog-api-key"] == API_KEY


async def test_explicit_proxy_wins_and_authenticates_without_showing_its_password(
    proxy: ConnectProxy, tls_server: FaultServer, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy.require_auth = basic("alice", "pr0xy-s3cret")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # dead: the explicit one wins
    explicit = f"http://alice:pr0xy-s3cret@127.0.0.1:{proxy.port}"
    async with AsyncClient(
        API_KEY, base_url=target(tls_server), verify=ca_file, proxy=explicit
    ) as client:
        assert "pr0xy-s3cret" not in repr(client)
        await client.create()
    assert proxy.requests[-1].proxy_authorization == basic("alice", "pr0xy-s3cret")


PROXY_PASSWORD = "wr0ng-pa55w0rd"


def proxy_with_login(proxy: ConnectProxy, login: str) -> str:
    """The test proxy's URL with ``login`` (``user:password@`` or nothing) in it."""
    return f"http://{login}127.0.0.1:{proxy.port}"


def assert_refused_login(exc: BaseException, proxy: ConnectProxy) -> None:
    """A typed, unretried 407 whose message names the proxy but none of the secrets."""
    assert type(exc) is ProxyAuthenticationError
    assert isinstance(exc, APIConnectionError)
    assert exc.attempts == 1
    text = f"{exc} {exc!r}"
    for secret in (PROXY_PASSWORD, API_KEY, "alice"):
        assert secret not in text
    assert f"through the proxy http://127.0.0.1:{proxy.port}:" in text
    assert "407 Proxy Authentication Required" in text
    assert "not retried" in text
    assert "proxy='http://user:password@host:port'" in text


@pytest.mark.parametrize("login", [f"alice:{PROXY_PASSWORD}@", ""], ids=["wrong", "none"])
@pytest.mark.parametrize("via", ["proxy=", "HTTPS_PROXY"])
async def test_a_refused_proxy_login_on_connect_is_raised_at_once_without_secrets(
    via: str,
    login: str,
    proxy: ConnectProxy,
    tls_server: FaultServer,
    ca_file: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An https:// target: the proxy answers the CONNECT with 407. With the default
    max_retries, one CONNECT and no retry; the token server sees nothing."""
    proxy.require_auth = basic("alice", "right")
    explicit = None
    if via == "proxy=":
        explicit = proxy_with_login(proxy, login)
    else:
        monkeypatch.setenv("HTTPS_PROXY", proxy_with_login(proxy, login))
    async with AsyncClient(
        API_KEY, base_url=target(tls_server), verify=ca_file, proxy=explicit
    ) as client:
        with pytest.raises(ProxyAuthenticationError) as caught:
            await client.create()
    assert_refused_login(caught.value, proxy)
    assert proxy.connects == [f"gemini.invalid:{tls_server.port}"]
    assert len(proxy.requests) == 1
    assert tls_server.attempts == 0


@pytest.mark.parametrize("via", ["proxy=", "HTTP_PROXY"])
async def test_a_refused_proxy_login_on_a_forwarded_request_is_raised_at_once(
    via: str, proxy: ConnectProxy, plain_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An http:// target: the proxy forwards requests, and its 407 comes back as an
    ordinary response. Still the typed error, with no retry."""
    proxy.require_auth = basic("alice", "right")
    explicit = None
    if via == "proxy=":
        explicit = proxy_with_login(proxy, f"alice:{PROXY_PASSWORD}@")
    else:
        monkeypatch.setenv("HTTP_PROXY", proxy_with_login(proxy, f"alice:{PROXY_PASSWORD}@"))
    url = target(plain_server)
    async with AsyncClient(
        API_KEY, base_url=url, allow_insecure_http=True, proxy=explicit
    ) as client:
        with pytest.raises(ProxyAuthenticationError) as caught:
            await client.create()
    assert_refused_login(caught.value, proxy)
    assert proxy.forwarded == [f"{url}/v1alpha/auth_tokens"]
    assert len(proxy.requests) == 1
    assert proxy.requests[0].proxy_authorization == basic("alice", PROXY_PASSWORD)
    assert plain_server.attempts == 0


def test_sync_client_raises_a_refused_proxy_login_at_once(
    proxy: ConnectProxy, tls_server: FaultServer, ca_file: str
) -> None:
    proxy.require_auth = basic("alice", "right")
    with (
        Client(
            API_KEY,
            base_url=target(tls_server),
            verify=ca_file,
            proxy=proxy_with_login(proxy, f"alice:{PROXY_PASSWORD}@"),
        ) as client,
        pytest.raises(ProxyAuthenticationError) as caught,
    ):
        client.create()
    assert_refused_login(caught.value, proxy)
    assert len(proxy.requests) == 1
    assert tls_server.attempts == 0


async def test_a_connect_the_proxy_cannot_complete_is_still_retried(
    proxy: ConnectProxy, tls_server: FaultServer, ca_file: str
) -> None:
    """A regression guard: only a 407 stops the retries. A CONNECT answered 502 (the
    proxy cannot reach the host) is an ordinary, retried connection error."""
    url = f"https://unknown.invalid:{tls_server.port}"  # a host the proxy cannot map
    async with AsyncClient(API_KEY, base_url=url, verify=ca_file, proxy=proxy.url) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.create()
    assert not isinstance(caught.value, ProxyAuthenticationError)
    assert "502" in str(caught.value)
    assert caught.value.attempts == 3
    assert proxy.connects == [f"unknown.invalid:{tls_server.port}"] * 3


async def test_a_407_from_the_service_itself_is_a_status_error(
    plain_server: FaultServer,
) -> None:
    """A regression guard: without a proxy, a 407 is the service's answer, not a proxy's."""
    plain_server.script(json_reply(407, {"error": {"code": 407, "message": "odd"}}))
    async with AsyncClient(API_KEY, base_url=plain_server.base_url, max_retries=0) as client:
        with pytest.raises(APIStatusError) as caught:
            await client.create()
    assert caught.value.status_code == 407
    assert plain_server.attempts == 1


async def test_a_dead_proxy_is_named_in_the_error(tls_server: FaultServer, ca_file: str) -> None:
    client = AsyncClient(
        API_KEY,
        base_url=target(tls_server),
        verify=ca_file,
        proxy="http://127.0.0.1:9",  # the discard port: nothing listens there
        max_retries=0,
    )
    async with client:
        with pytest.raises(APIConnectionError, match=r"through the proxy http://127\.0\.0\.1:9"):
            await client.create()


# --- bypassing the proxy --------------------------------------------------------------------


@pytest.mark.parametrize(
    "no_proxy",
    [
        "gemini.invalid",
        ".invalid",
        "*.invalid",
        "example.com, gemini.invalid:{port}",
        "GEMINI.INVALID",
        "*",
    ],
)
@pytest.mark.parametrize("var", ["NO_PROXY", "no_proxy"])
async def test_no_proxy_goes_direct(
    var: str,
    no_proxy: str,
    proxy: ConnectProxy,
    tls_server: FaultServer,
    ca_file: str,
    resolving_session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv(var, no_proxy.format(port=tls_server.port))
    async with AsyncClient(
        API_KEY, base_url=target(tls_server), verify=ca_file, session=resolving_session
    ) as client:
        await client.create()
    assert proxy.requests == []
    assert tls_server.attempts == 1


@pytest.mark.parametrize("no_proxy", ["example.com", "gemini.invalid:1", "invalid.example"])
async def test_no_proxy_for_other_hosts_still_proxies(
    no_proxy: str,
    proxy: ConnectProxy,
    tls_server: FaultServer,
    ca_file: str,
    resolving_session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    async with AsyncClient(
        API_KEY, base_url=target(tls_server), verify=ca_file, session=resolving_session
    ) as client:
        await client.create()
    assert proxy.connects == [f"gemini.invalid:{tls_server.port}"]


async def test_trust_env_false_ignores_the_environment(
    proxy: ConnectProxy,
    tls_server: FaultServer,
    ca_file: str,
    resolving_session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    async with AsyncClient(
        API_KEY,
        base_url=target(tls_server),
        verify=ca_file,
        session=resolving_session,
        trust_env=False,
    ) as client:
        await client.create()
    assert proxy.requests == []
    assert tls_server.attempts == 1


def test_sync_client_trust_env_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with Client(API_KEY, trust_env=False) as client:
        assert client._async._http.proxy is None
    with Client(API_KEY) as client:
        assert client._async._http.proxy == "http://127.0.0.1:9"


async def test_loopback_targets_skip_the_environment_proxy(
    proxy: ConnectProxy, plain_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local emulator keeps working behind a proxy: the proxy cannot reach our loopback.
    An explicit proxy= still applies."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("ALL_PROXY", proxy.url)
    async with AsyncClient(API_KEY, base_url=plain_server.base_url) as client:
        await client.create()
    assert proxy.requests == []
    async with AsyncClient(API_KEY, base_url=plain_server.base_url, proxy=proxy.url) as client:
        await client.create()
    assert proxy.forwarded == [f"{plain_server.base_url}/v1alpha/auth_tokens"]
    assert plain_server.attempts == 2


# --- the rules, without a network -----------------------------------------------------------

HTTPS_URL = "https://generativelanguage.googleapis.com/v1alpha/auth_tokens"
HTTP_URL = "http://tokens.internal:8080/v1alpha/auth_tokens"


@pytest.mark.parametrize(
    ("environ", "url", "expected"),
    [
        ({}, HTTPS_URL, None),
        ({"HTTPS_PROXY": "http://p:3128"}, HTTPS_URL, "http://p:3128"),
        ({"HTTPS_PROXY": "p.corp:3128"}, HTTPS_URL, "http://p.corp:3128"),  # no scheme
        ({"HTTPS_PROXY": "http://p:3128/"}, HTTPS_URL, "http://p:3128"),
        ({"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:1"}, HTTPS_URL, "http://low:1"),
        ({"HTTPS_PROXY": "", "ALL_PROXY": "http://all:1"}, HTTPS_URL, "http://all:1"),
        ({"HTTP_PROXY": "http://p:1"}, HTTPS_URL, None),  # http_proxy is for http:// only
        ({"HTTP_PROXY": "http://p:1"}, HTTP_URL, "http://p:1"),
        ({"HTTPS_PROXY": "http://p:1"}, HTTP_URL, None),
        # "httpoxy": in a CGI script HTTP_PROXY may come from a request header
        ({"HTTP_PROXY": "http://evil:1", "REQUEST_METHOD": "GET"}, HTTP_URL, None),
        ({"http_proxy": "http://ok:1", "REQUEST_METHOD": "GET"}, HTTP_URL, "http://ok:1"),
        ({"HTTPS_PROXY": "https://tls-proxy:443"}, HTTPS_URL, "https://tls-proxy:443"),
        ({"HTTPS_PROXY": "http://u:pw@p:1"}, HTTPS_URL, "http://u:pw@p:1"),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "googleapis.com"}, HTTPS_URL, None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".googleapis.com"}, HTTPS_URL, None),
        ({"HTTPS_PROXY": "http://p:1", "no_proxy": "x.org,*.googleapis.com"}, HTTPS_URL, None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "googleapis.com:443"}, HTTPS_URL, None),
        (
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "googleapis.com:8443"},
            HTTPS_URL,
            "http://p:1",
        ),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "apis.com"}, HTTPS_URL, "http://p:1"),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "oogleapis.com"}, HTTPS_URL, "http://p:1"),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "tokens.internal:8080"}, HTTP_URL, None),
        ({"HTTP_PROXY": "http://p:1"}, "http://[::1]:8765/x", None),  # loopback
        ({"HTTP_PROXY": "http://p:1"}, "http://localhost:8765/x", None),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "::1"}, "http://[fe80::1]:80/x", "http://p:1"),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "[fe80::1]"}, "http://[fe80::1]:80/x", None),
    ],
)
def test_proxy_from_the_environment(
    environ: dict[str, str], url: str, expected: str | None
) -> None:
    assert resolve_proxy(None, trust_env=True, url=url, environ=environ) == expected
    assert resolve_proxy(None, trust_env=False, url=url, environ=environ) is None


def test_an_explicit_proxy_ignores_no_proxy() -> None:
    environ = {"NO_PROXY": "*"}
    got = resolve_proxy("http://p:1", trust_env=True, url=HTTPS_URL, environ=environ)
    assert got == "http://p:1"


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("socks5://p:1080", "http:// or https://"),
        ("ftp://u:s3cr3t-pw@p:21", "http:// or https://"),
        ("http://", "host"),
        ("http://:3128", "host"),
        ("http://p:99999", "port"),
        ("http://p:port", "port"),
        ("http://u:s3cr3t-pw@p:1/path", "no path"),
        ("http://p:1?x=1", "no path"),
        ("", "proxy URL such as"),
        ("   ", "proxy URL such as"),
        (3128, "proxy URL such as"),
    ],
)
def test_a_bad_proxy_is_refused_naming_proxy_and_the_rule(value: Any, rule: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        AsyncClient(API_KEY, proxy=value)
    message = str(caught.value)
    assert message.startswith("proxy ")
    assert rule in message
    assert "s3cr3t-pw" not in message
    with pytest.raises(ConfigurationError, match=r"^proxy "):
        Client(API_KEY, proxy=value)


@pytest.mark.parametrize("var", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"])
def test_a_bad_environment_proxy_is_refused_naming_the_variable(
    var: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(var, "socks5h://u:s3cr3t-pw@p:1080")
    with pytest.raises(ConfigurationError) as caught:
        AsyncClient(API_KEY)
    assert str(caught.value).startswith(f"{var} must use the http:// or https:// scheme")
    assert "s3cr3t-pw" not in str(caught.value)
    AsyncClient(API_KEY, trust_env=False)  # not read at all


@pytest.mark.parametrize("value", [None, 1, "yes"])
def test_trust_env_must_be_a_bool(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="trust_env must be True or False"):
        AsyncClient(API_KEY, trust_env=value)


def test_check_proxy_url_keeps_credentials_and_drops_the_root_path() -> None:
    assert check_proxy_url(" http://u:p@h:1/ ") == "http://u:p@h:1"
    assert check_proxy_url("https://h") == "https://h"


# --- base_url: no credentials (#11.8) -------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://user:hunter2-pw@generativelanguage.googleapis.com",
        "https://hunter2-pw@generativelanguage.googleapis.com",
        "https://user:hunter2-pw@127.0.0.1:8765",
        "http://:hunter2-pw@localhost:8765/",
        "ftp://user:hunter2-pw@example.com",  # the credentials rule comes first
    ],
)
def test_credentials_in_base_url_are_refused_without_echoing_them(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for make in (AsyncClient, Client):
        with pytest.raises(ConfigurationError) as caught:
            make(API_KEY, base_url=url)
        message = str(caught.value)
        assert message.startswith("base_url must not contain credentials (user:password@)")
        assert "hunter2-pw" not in message
        assert "***@" in message
    monkeypatch.setenv("GEMINI_BASE_URL", url)
    for make in (AsyncClient, Client):
        with pytest.raises(ConfigurationError) as caught:
            make(API_KEY)
        assert str(caught.value).startswith("GEMINI_BASE_URL must not contain credentials")
        assert "hunter2-pw" not in str(caught.value)


@pytest.mark.parametrize("url", ["https://example.com:99999", "https://example.com:http"])
def test_a_base_url_with_a_bad_port_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^base_url has an invalid port"):
        AsyncClient(API_KEY, base_url=url)


def test_a_base_url_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"^base_url must be a string"):
        AsyncClient(API_KEY, base_url=b"https://example.com")  # type: ignore[arg-type]


async def test_an_untrusted_certificate_behind_the_proxy_fails_at_once(
    proxy: ConnectProxy, tls_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the tunnel the certificate is the target's: without its CA, no retry."""
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    async with AsyncClient(API_KEY, base_url=target(tls_server)) as client:
        with pytest.raises(CertificateVerificationError, match=r"gemini\.invalid") as caught:
            await client.create()
    assert caught.value.attempts == 1
    assert len(proxy.connects) == 1
