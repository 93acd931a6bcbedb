"""``gemini-tokens serve`` as users run it: the real command in a subprocess, with a local
JWKS server (tests/jwks_server.py), the emulator as the token service and a real Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gemini_tokens.testing import Emulator

from .broker.redis_server import NEEDS_REDIS, REDIS_SERVER, redis_server
from .jwks_server import (  # noqa: F401  (fixtures)
    AUDIENCE,
    ISSUER,
    IdentityProvider,
    JWKSServer,
    SigningKey,
    idp_fixture,
    jwks_fixture,
)
from .spawn import free_port

pytestmark = pytest.mark.slow

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
START_TIMEOUT = 30.0
MIN_REFRESH = 2  # jwks_min_refresh_seconds in these tests (a minute by default)


def config(
    jwks_url: str,
    *,
    storage: str = "memory://",
    per_caller: tuple[str, ...] = ("100/minute",),
    extra: str = "",
    jwt_extra: str = "",
) -> str:
    limits = ", ".join(json.dumps(x) for x in per_caller)
    return textwrap.dedent(
        f"""
        [server]
        host = "127.0.0.1"
        port = 0
        allowed_origins = ["https://app.example.test"]
        shutdown_timeout = 10

        [limits]
        per_caller = [{limits}]
        storage = "{storage}"

        [auth.jwt]
        issuer = "{ISSUER}"
        audience = "{AUDIENCE}"
        algorithms = ["RS256", "ES256"]
        jwks_url = "{jwks_url}"
        jwks_min_refresh_seconds = {MIN_REFRESH}
        {jwt_extra}

        [policy]
        model = "{MODEL}"
        config = {{ response_modalities = ["AUDIO"] }}
        uses = 2
        expire_minutes = 15
        client_may_set = {{ temperature = {{ min = 0.0, max = 1.0 }} }}
        """
    ) + textwrap.dedent(extra)


class Serve:
    """One ``gemini-tokens serve`` process; ``url`` is its token endpoint.

    ``toml`` None: no ``--config`` (and no ./broker.toml: it runs in an empty directory).
    """

    def __init__(
        self, tmp_path: Path, toml: str | None, emulator: Emulator, *args: str, **env: str
    ) -> None:
        self.config = tmp_path / f"broker-{id(self)}.toml"
        config = ["--config", str(self.config)]
        if toml is None:
            config = []
            (tmp_path / "no-config").mkdir(exist_ok=True)
        else:
            self.config.write_text(toml)
        self.stderr_path = tmp_path / f"serve-{id(self)}.err"
        environment = {
            **os.environ,
            "GEMINI_API_KEY": emulator.api_key,
            "GEMINI_BASE_URL": emulator.base_url,
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        if "OTEL_EXPORTER_OTLP_ENDPOINT" not in env:
            environment.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gemini_tokens", "serve", *config, *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=environment,
            text=True,
            cwd=tmp_path / "no-config" if toml is None else None,
        )
        self.base = self._wait_for_url()
        self.url = self.base + "/token"

    def _wait_for_url(self) -> str:
        found: list[str] = []

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                match = re.search(r"listening on (http://\S+?)/token", line)
                if match:
                    found.append(match.group(1))
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(START_TIMEOUT)
        if not found:
            self.stop()
            raise AssertionError(f"serve did not start:\n{self.stderr}")
        return found[0]

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()  # the child writes the file itself

    def log_lines(self, logger: str) -> list[dict[str, Any]]:
        lines = []
        for line in self.stderr.splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("logger") == logger:
                    lines.append(entry)
        return lines

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 20) -> int:
        code = self.process.poll()
        if code is None:
            self.terminate()
            try:
                code = self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()
        return code


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator.running() as emu:
        yield emu


@pytest.fixture
def start(tmp_path: Path, emulator: Emulator) -> Iterator[Any]:
    started: list[Serve] = []

    def start(toml: str | None, *args: str, **env: str) -> Serve:
        serve = Serve(tmp_path, toml, emulator, *args, **env)
        started.append(serve)
        return serve

    yield start
    for serve in started:
        serve.stop()


async def post(
    http: aiohttp.ClientSession, url: str, jwt: str | None, **kwargs: Any
) -> tuple[int, dict[str, Any], Any]:
    headers = dict(kwargs.pop("headers", {}))
    if jwt is not None:
        headers["Authorization"] = f"Bearer {jwt}"
    async with http.post(url, headers=headers, **kwargs) as response:
        return response.status, dict(response.headers), await response.json()


# --- a good token, and every bad one ---------------------------------------------------------


async def test_a_good_jwt_gets_a_token(
    start: Any, jwks: JWKSServer, idp: IdentityProvider, emulator: Emulator, http: Any
) -> None:
    serve = start(config(jwks.url))
    jwt = idp.token("alice")
    status, headers, body = await post(http, serve.url, jwt, json={"config": {"temperature": 0.5}})
    assert status == 200, body
    assert body["name"].startswith("auth_tokens/")
    assert body["uses"] == 2
    assert body["liveUrl"].startswith("ws://127.0.0.1")
    assert headers["Cache-Control"] == "no-store"
    (issued,) = emulator.tokens
    assert issued.name == body["name"]
    assert issued.setup["generationConfig"]["temperature"] == 0.5

    serve.stop()
    audit = serve.log_lines("gemini_tokens.audit")
    assert [(e["outcome"], e["caller_id"]) for e in audit] == [("minted", "alice")]
    access = serve.log_lines("gemini_tokens.serve.access")
    assert [(e["method"], e["path"], e["status"]) for e in access] == [("POST", "/token", 200)]
    # Neither the token, nor the JWT, nor the key in any log line.
    for secret in (body["name"], body["name"].split("/")[1], jwt, emulator.api_key):
        assert secret not in serve.stderr


@pytest.mark.parametrize(
    "kind",
    ["expired", "wrong-audience", "wrong-issuer", "alg-none", "hs256-public-key", "unknown-kid"],
)
async def test_bad_jwts_are_refused_and_nothing_is_minted(
    start: Any,
    jwks: JWKSServer,
    idp: IdentityProvider,
    emulator: Emulator,
    http: Any,
    kind: str,
) -> None:
    serve = start(config(jwks.url))
    jwt = {
        "expired": lambda: idp.token(exp=int(time.time()) - 3600),
        "wrong-audience": lambda: idp.token(aud="another-service"),
        "wrong-issuer": lambda: idp.token(iss="https://evil.example.test/"),
        "alg-none": idp.unsigned,
        "hs256-public-key": idp.hs256_with_public_key,
        "unknown-kid": lambda: idp.token(key=SigningKey()),
    }[kind]()
    status, _, body = await post(http, serve.url, jwt)
    assert status == 401
    assert body["error"]["status"] == "UNAUTHENTICATED"
    assert jwt not in json.dumps(body)
    assert emulator.tokens == []
    serve.stop()
    (event,) = serve.log_lines("gemini_tokens.audit")
    assert (event["outcome"], event["reason"]) == ("denied", "unauthenticated")
    assert jwt not in serve.stderr


async def test_a_rotated_jwks_is_picked_up_and_refreshes_stay_rare(
    start: Any, jwks: JWKSServer, idp: IdentityProvider, http: Any
) -> None:
    serve = start(config(jwks.url))
    assert (await post(http, serve.url, idp.token()))[0] == 200
    fetches = jwks.requests
    new_key = SigningKey(kind="EC")
    jwks.rotate(new_key)
    await asyncio.sleep(MIN_REFRESH + 0.2)
    status, _, body = await post(http, serve.url, idp.token("bob", key=new_key))
    assert status == 200, body
    assert jwks.requests == fetches + 1
    # A burst of unknown kids right after: refused, and at most one fetch per interval
    # (none at all when the burst is quicker than the interval, as it is on an idle box).
    burst_started = time.monotonic()
    strangers = [idp.token(key=SigningKey()) for _ in range(5)]
    for stranger in strangers:
        assert (await post(http, serve.url, stranger))[0] == 401
    intervals = int((time.monotonic() - burst_started) // MIN_REFRESH)
    assert jwks.requests <= fetches + 1 + intervals
    # The old key is gone.
    assert (await post(http, serve.url, idp.token(key=idp.key)))[0] == 401


# --- limits across processes -----------------------------------------------------------------


@pytest.fixture
def redis_url() -> Iterator[str]:
    if REDIS_SERVER is None:
        pytest.skip(NEEDS_REDIS)
    with redis_server() as uri:
        yield uri


async def test_limits_are_shared_by_two_serve_processes(
    start: Any, jwks: JWKSServer, idp: IdentityProvider, http: Any, redis_url: str
) -> None:
    toml = config(jwks.url, storage=redis_url, per_caller=("3/minute",))
    first, second = start(toml), start(toml)
    jwt = idp.token("carol")
    results = [await post(http, serve.url, jwt) for serve in (first, second) * 3]
    statuses = [status for status, _, _ in results]
    assert sorted(statuses) == [200, 200, 200, 429, 429, 429]
    assert statuses[:3] == [200, 200, 200]
    for _, headers, body in results[3:]:
        assert body["error"]["status"] == "RESOURCE_EXHAUSTED"
        assert int(headers["Retry-After"]) >= 1
    # Another caller has its own budget.
    assert (await post(http, second.url, idp.token("dave")))[0] == 200
    async with http.get(first.base + "/readyz") as response:
        assert response.status == 200
        assert (await response.json())["storage"] is True


async def test_readyz_reports_an_unreachable_storage(
    start: Any, jwks: JWKSServer, http: Any
) -> None:
    serve = start(config(jwks.url, storage=f"redis://127.0.0.1:{free_port()}/0"))
    async with http.get(serve.base + "/healthz") as response:
        assert response.status == 200
    async with http.get(serve.base + "/readyz") as response:
        assert response.status == 503
        body = await response.json()
    assert body["storage"] is False
    assert body["upstream"] is True


# --- shutdown --------------------------------------------------------------------------------


async def test_sigterm_lets_the_request_in_flight_finish_and_refuses_new_ones(
    start: Any, jwks: JWKSServer, idp: IdentityProvider, emulator: Emulator, http: Any
) -> None:
    serve = start(config(jwks.url))
    jwt = idp.token()
    assert (await post(http, serve.url, jwt))[0] == 200  # keys fetched, client warm
    emulator.delay_next(2.0)
    in_flight = asyncio.ensure_future(post(http, serve.url, jwt))
    deadline = time.monotonic() + 10
    while len([r for r in emulator.requests if "auth_tokens" in r.path]) < 2:
        assert time.monotonic() < deadline, "the request never reached the emulator"
        await asyncio.sleep(0.02)
    serve.terminate()
    await asyncio.sleep(0.5)
    # New connections are refused while the one in flight finishes.
    async with aiohttp.ClientSession() as fresh:
        with pytest.raises(aiohttp.ClientConnectionError):
            await post(fresh, serve.url, jwt)
    status, _, body = await in_flight
    assert status == 200, body
    assert body["name"].startswith("auth_tokens/")
    # Wait for the exit the first SIGTERM started; stop() would send a second one, which may
    # land after the handlers are gone and kill the process while it winds down.
    assert serve.process.wait(20) == 0
    assert serve.stop() == 0
    assert len(emulator.tokens) == 2
    assert "stopping; 1 request(s) in flight" in serve.stderr


# --- the command line ------------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "gemini_tokens", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GEMINI_API_KEY": "check-key", **(env or {})},
        cwd=cwd,
        check=False,
    )


def test_check_validates_and_exits(tmp_path: Path) -> None:
    path = tmp_path / "broker.toml"
    path.write_text(config("https://id.example.test/.well-known/jwks.json"))
    out = run_cli("serve", "--config", str(path), "--check")
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout


@pytest.mark.parametrize(
    ("edit", "env", "expected"),
    [
        (("port = 0", "port = 99999"), {}, "server.port: must be an integer from 0 to 65535"),
        (("uses = 2", "uses = -1"), {}, "policy.uses"),
        (("shutdown_timeout = 10", "shutdown_timeout = 10\nbogus = 1"), {}, "server.bogus"),
        (('"100/minute"', '"lots"'), {}, "limits.per_caller: cannot parse 'lots'"),
        (('"RS256", "ES256"', '"HS256"'), {}, "must not be used with a public key"),
        (("", ""), {"GEMINI_TOKENS_SERVER_PORT": "many"}, "GEMINI_TOKENS_SERVER_PORT"),
        (
            ("", ""),
            {"GEMINI_TOKENS_LIMITS_STORAGE": "mongo://x"},
            "GEMINI_TOKENS_LIMITS_STORAGE (limits.storage): unknown scheme",
        ),
        (
            ("", ""),
            {"GEMINI_TOKENS_SERVER_PROT": "1"},
            "GEMINI_TOKENS_SERVER_PROT (server.prot): is not a setting; did you mean 'port'?",
        ),
    ],
)
def test_a_bad_setting_names_the_file_the_key_and_the_rule(
    tmp_path: Path, edit: tuple[str, str], env: dict[str, str], expected: str
) -> None:
    path = tmp_path / "broker.toml"
    text = config("https://id.example.test/.well-known/jwks.json")
    if edit[0]:
        assert edit[0] in text
        text = text.replace(edit[0], edit[1], 1)
    path.write_text(text)
    for extra in ((), ("--check",)):
        out = run_cli("serve", "--config", str(path), *extra, env=env)
        assert out.returncode == 2, out.stdout + out.stderr
        assert expected in out.stderr
        assert "listening" not in out.stdout
        assert "Traceback" not in out.stderr
    if not env:
        assert str(path) in out.stderr
    else:  # the variable is named, not the file
        assert str(path) not in out.stderr


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    out = run_cli("serve", "--config", str(tmp_path / "nope.toml"), "--check")
    assert out.returncode == 2
    assert "nope.toml: file: cannot be read" in out.stderr


async def test_dev_mode_listens_on_loopback_allows_any_origin_and_says_so(
    start: Any, jwks: JWKSServer, idp: IdentityProvider, http: Any
) -> None:
    toml = config(jwks.url).replace('host = "127.0.0.1"', 'host = "0.0.0.0"')
    normal = start(toml)
    foreign = {"Origin": "https://elsewhere.example.test"}
    assert (await post(http, normal.url, idp.token(), headers=foreign))[0] == 403
    dev = start(toml, "--dev")
    assert dev.base.startswith("http://127.0.0.1:")
    status, headers, _ = await post(http, dev.url, idp.token(), headers=foreign)
    assert headers["Access-Control-Allow-Origin"] == "https://elsewhere.example.test"
    assert status == 200
    assert "DEVELOPMENT MODE" in dev.stderr
    assert "ANY web origin" in dev.stderr


# --- OpenTelemetry export --------------------------------------------------------------------


class OTLPRecorder:
    """An OTLP/HTTP collector stand-in on 127.0.0.1: records what is POSTed to /v1/*."""

    def __init__(self) -> None:
        from aiohttp import web

        self.received: dict[str, list[bytes]] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._web = web
        self.url = ""

    async def _handle(self, request: Any) -> Any:
        self.received.setdefault(request.path, []).append(await request.read())
        return self._web.Response(body=b"", content_type="application/x-protobuf")

    async def _start(self) -> None:
        app = self._web.Application()
        app.router.add_post("/v1/{kind}", self._handle)
        self._runner = self._web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = self._web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    def __enter__(self) -> OTLPRecorder:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


async def test_otlp_export_and_prometheus_metrics(
    start: Any, jwks: JWKSServer, idp: IdentityProvider, emulator: Emulator, http: Any
) -> None:
    pytest.importorskip(
        "opentelemetry.proto",
        reason="needs opentelemetry-exporter-otlp-proto-http: pip install -e '.[test]'",
    )
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    toml = config(jwks.url, per_caller=("1/minute",)).replace(
        "shutdown_timeout = 10", "shutdown_timeout = 10\nmetrics = true"
    )
    with OTLPRecorder() as collector:
        serve = start(toml, OTEL_EXPORTER_OTLP_ENDPOINT=collector.url)
        jwt = idp.token("erin")
        assert (await post(http, serve.url, jwt))[0] == 200
        assert (await post(http, serve.url, jwt))[0] == 429
        assert (await post(http, serve.url, None))[0] == 401
        async with http.get(serve.base + "/metrics") as response:
            assert response.status == 200
            prometheus = await response.text()
        assert serve.stop() == 0  # the providers flush on shutdown

    decisions = {
        tuple(sorted(labels.split(","))): float(value)
        for labels, value in re.findall(
            r"^gemini_tokens_broker_decisions_total\{([^}]*)\} (\S+)$", prometheus, re.M
        )
    }
    outcomes = {
        (re.search(r'outcome="(\w+)"', ",".join(k)) or [None, None])[1]: v
        for k, v in decisions.items()
    }
    assert outcomes == {"minted": 1.0, "limited": 1.0, "denied": 1.0}
    assert re.search(
        r'^gemini_tokens_broker_limiter_rejections_total\{[^}]*scope="caller"[^}]*\} 1\.0$',
        prometheus,
        re.M,
    )

    spans = []
    for raw in collector.received.get("/v1/traces", []):
        request = ExportTraceServiceRequest()
        request.ParseFromString(raw)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                spans.extend(scope_spans.spans)
    by_name: dict[str, list[Any]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    assert len(by_name["gemini_tokens.broker.decision"]) == 3
    (mint,) = by_name["gemini_tokens.create"]
    minted = [
        d
        for d in by_name["gemini_tokens.broker.decision"]
        if any(
            a.key == "gemini_tokens.outcome" and a.value.string_value == "minted"
            for a in d.attributes
        )
    ]
    assert mint.parent_span_id == minted[0].span_id  # the mint is inside the decision

    metric_names = set()
    for raw in collector.received.get("/v1/metrics", []):
        request = ExportMetricsServiceRequest()
        request.ParseFromString(raw)
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                metric_names.update(m.name for m in scope_metrics.metrics)
    assert {"gemini_tokens.mint.duration", "gemini_tokens.broker.decisions"} <= metric_names
    everything = b"".join(b"".join(v) for v in collector.received.values()) + prometheus.encode()
    assert jwt.encode() not in everything
    assert emulator.tokens[0].name.encode() not in everything
    assert b"erin" not in everything  # no caller id in telemetry


def test_the_docs_config_error_is_what_the_command_prints(tmp_path: Path) -> None:
    docs = (Path(__file__).parent.parent / "docs" / "serve.md").read_text()
    shown = docs.split("$ gemini-tokens serve --config broker.toml\n", 1)[1].split("\n", 1)[0]
    path = tmp_path / "broker.toml"
    path.write_text(config("https://id.example.test/jwks").replace("port = 0", "port = 99999"))
    out = run_cli("serve", "--config", "broker.toml", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == shown
