"""Benchmark: a FastAPI token endpoint with the broker, against the same app written by hand.

Four apps, each a FastAPI app under uvicorn in a process of its own, each minting against
the emulator (a process of its own too), all with the same policy (a model, AUDIO,
``lock_additional_fields=[]``, ``uses=2``, 15 minutes, 1 minute to connect) and the same
bearer-token check:

- ``broker``: ``router(TokenBroker(...))``, limits in memory (three of them: two per caller,
  one global, never reached but sized like production ones), Live-minute budgets (one per
  caller, one global: each token charged its 15 minutes, never refused) and so suspensions
  checked, audit to a null sink.
- ``broker+redis``: the same, limits in a real ``redis-server`` (skipped without one).
- ``hand (gemini_tokens)``: a hand-written endpoint around ``AsyncClient.create``, no limits,
  no audit: what the broker adds is the difference.
- ``hand (google-genai)``: the same endpoint around ``client.aio.auth_tokens.create`` of the
  official SDK.

A load generator (this process) runs 64 concurrent callers on loopback. Rounds are
interleaved across the apps, and each figure is the median of the rounds:

- **requests/s per core**: requests / CPU seconds of the app's process (user + system, from
  ``/proc``): what one fully used core serves. Plus the wall-clock requests/s of the round.
- **p50 / p99**: each request's latency as the load generator saw it.
- **CPU µs/request** of the app's process (end to end: HTTP server, framework, endpoint,
  upstream call).
- **broker overhead**: ``broker.handle`` against the same token made by hand (``create``,
  ``to_dict``, ``live_url``, JSON), both in-process against the emulator: what the broker
  adds (origin, body, ``authorize``, policy, limiter, audit, answer) as a share of the
  broker app's end-to-end CPU per request (target: under 15 %). Also its steps alone (the
  mint replaced by a ready token, at a rate far above the server's, so its limit windows
  are fuller than in the server), and the difference of the whole apps (broker - hand),
  which carries the web server's noise.
- **Redis**: the commands the broker sends to Redis per request (``MONITOR``, not counting
  those its scripts run inside Redis), and how many round trips they take (counted on
  redis-py's connections, in this process, for the broker's limiter with the same limits:
  a round trip starts when a command goes out while none is waiting for its reply).

Run ``python benchmarks/bench_broker.py`` (``--quick`` for a smoke run). Needs the
``bench`` and ``broker`` extras, fastapi and uvicorn (the ``test`` extra). Prints a
markdown table; writes ``benchmarks/results/broker.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repository: the tests' Redis and port helpers

from tests.broker.redis_server import NEEDS_REDIS, REDIS_SERVER, Monitor  # noqa: E402
from tests.broker.redis_server import redis_server as _redis_server  # noqa: E402
from tests.spawn import free_port  # noqa: E402

DEFAULT_OUTPUT = HERE / "results" / "broker.json"
API_KEY = "bench-key-not-a-secret"
MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
USERS = {f"Bearer user-{i}": f"user-{i}" for i in range(64)}
BROKER, REDIS, HAND, GENAI = "broker", "broker+redis", "hand (gemini_tokens)", "hand (google-genai)"
APPS = (BROKER, REDIS, HAND, GENAI)
#: Never reached during a run (every request is a mint), yet sized like production limits:
#: a moving window keeps one entry per request it counts, so its cost grows with how many
#: requests a window holds (hundreds here, as with "600/minute"; a "1000000/minute" window
#: filled by a benchmark would measure list copies, not the broker).
CALLER_LIMITS = ["1000/second", "1000000/day"]
GLOBAL_LIMITS = ["50000/second"]
#: Budgets never reached either: every token is charged its 15 minutes (a counter per
#: window: what they hold costs nothing). ``--no-budgets`` leaves them out (and so the
#: suspension check): their share is the difference of two runs.
LIVE_MINUTES: list[str] | None = ["100000/day"]
GLOBAL_LIVE_MINUTES: list[str] | None = ["1000000/day"]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _wait_port(port: int, process: subprocess.Popen[Any], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


# -- the apps -------------------------------------------------------------------------------


def _policy() -> Any:
    from gemini_tokens.broker import Policy

    return Policy(
        model=MODEL,
        config={"response_modalities": ["AUDIO"]},
        lock_additional_fields=[],
        uses=2,
        expire_minutes=15,
        new_session_expire_minutes=1,
        client_may_set={"speech_config": ["Kore", "Puck"], "temperature": (0.0, 1.0)},
    )


async def _authorize(request: Any) -> Any:
    from gemini_tokens.broker import Caller, Denied

    user = USERS.get(request.headers.get("authorization", ""))
    if user is None:
        raise Denied(401, "sign in first")
    return Caller(id=user)


def _null_sink(event: Any) -> None:
    return None


def make_broker(storage_uri: str = "memory://") -> Any:
    from gemini_tokens.broker import TokenBroker

    return TokenBroker(
        authorize=_authorize,
        policy=_policy(),
        rate_limits=CALLER_LIMITS,
        global_rate_limits=GLOBAL_LIMITS,
        live_minutes=LIVE_MINUTES,
        global_live_minutes=GLOBAL_LIVE_MINUTES,
        storage_uri=storage_uri,
        audit=_null_sink,
    )


def make_app(kind: str, storage_uri: str) -> Any:
    """The FastAPI app of ``kind``."""
    from fastapi import FastAPI, Header, HTTPException
    from fastapi.responses import JSONResponse

    import gemini_tokens

    app = FastAPI()
    if kind in (BROKER, REDIS):
        from gemini_tokens.broker.fastapi import router

        app.include_router(router(make_broker(storage_uri)))
        return app

    def server_time() -> str:
        now = dt.datetime.now(dt.timezone.utc)
        return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    constraints = {"model": MODEL, "config": {"response_modalities": ["AUDIO"]}}
    if kind == HAND:
        client = gemini_tokens.AsyncClient(API_KEY)

        @app.post("/token")
        async def mint(authorization: str = Header("")) -> JSONResponse:
            if authorization not in USERS:
                raise HTTPException(status_code=401, detail="sign in first")
            token = await client.create(
                uses=2,
                expire_minutes=15,
                new_session_expire_minutes=1,
                live_connect_constraints=constraints,
                lock_additional_fields=[],
            )
            body = {**token.to_dict(), "liveUrl": token.live_url(), "serverTime": server_time()}
            return JSONResponse(body, headers={"Cache-Control": "no-store"})

        return app

    import warnings

    from google import genai
    from google.genai import types

    warnings.filterwarnings("ignore", category=genai._common.ExperimentalWarning)
    sdk = genai.Client(
        api_key=API_KEY,
        http_options=types.HttpOptions(
            base_url=os.environ["GEMINI_BASE_URL"], api_version="v1alpha"
        ),
    )

    @app.post("/token")
    async def mint_genai(authorization: str = Header("")) -> JSONResponse:
        if authorization not in USERS:
            raise HTTPException(status_code=401, detail="sign in first")
        now = dt.datetime.now(dt.timezone.utc)
        token = await sdk.aio.auth_tokens.create(
            config={
                "uses": 2,
                "expire_time": now + dt.timedelta(minutes=15),
                "new_session_expire_time": now + dt.timedelta(minutes=1),
                "live_connect_constraints": constraints,
                "lock_additional_fields": [],
            }
        )
        body = token.model_dump(mode="json", by_alias=True, exclude_none=True)
        body["serverTime"] = server_time()
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    return app


def serve(kind: str, port: int, storage_uri: str) -> None:
    """``--serve``: run one app under uvicorn until terminated."""
    import uvicorn

    uvicorn.run(
        make_app(kind, storage_uri),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


# -- the broker's own cost, in-process ----------------------------------------------------


def broker_overhead_us(calls: int) -> float:
    """CPU µs per `TokenBroker.handle` with the mint step replaced by a ready token."""
    from gemini_tokens import EphemeralToken
    from gemini_tokens.broker import BrokerRequest, TokenBroker

    now = dt.datetime.now(dt.timezone.utc)
    ready = EphemeralToken(
        name="auth_tokens/bench",
        expire_time=now + dt.timedelta(minutes=15),
        new_session_expire_time=now + dt.timedelta(minutes=1),
        uses=2,
        locked_fields=("model", "generationConfig.responseModalities"),
    )

    class NoMint(TokenBroker):
        async def _mint(self, policy: Any, choices: Any, overrides: Any = None) -> Any:
            return ready

    broker = NoMint(
        authorize=_authorize,
        policy=_policy(),
        rate_limits=CALLER_LIMITS,
        global_rate_limits=GLOBAL_LIMITS,
        live_minutes=LIVE_MINUTES,
        global_live_minutes=GLOBAL_LIVE_MINUTES,
        audit=_null_sink,
        client=__import__("gemini_tokens").AsyncClient(API_KEY, base_url="http://127.0.0.1:9"),
    )
    requests = [
        BrokerRequest(
            method="POST",
            path="/token",
            headers={"authorization": f"Bearer user-{i % 64}", "host": "127.0.0.1"},
            client_address="127.0.0.1",
        )
        for i in range(calls)
    ]

    async def run() -> float:
        for request in requests[:200]:  # warm-up
            await broker.handle(request)
        start = time.process_time()
        for request in requests:
            response = await broker.handle(request)
            assert response.status == 200, response
        return (time.process_time() - start) / calls * 1e6

    return asyncio.run(run())


def broker_vs_create_us(base_url: str, calls: int, rounds: int) -> dict[str, float]:
    """CPU µs per request, in this process, against the emulator (another process):
    ``broker.handle`` against the same token made by hand (``create`` + ``to_dict`` +
    ``live_url`` + JSON). The difference is everything the broker adds but the web server.
    """
    import gemini_tokens
    from gemini_tokens.broker import BrokerRequest

    os.environ.update(GEMINI_API_KEY=API_KEY, GEMINI_BASE_URL=base_url)
    constraints = {"model": MODEL, "config": {"response_modalities": ["AUDIO"]}}
    requests = [
        BrokerRequest(
            method="POST",
            path="/token",
            headers={"authorization": f"Bearer user-{i}", "host": "127.0.0.1"},
            client_address="127.0.0.1",
        )
        for i in range(64)
    ]

    async def run() -> dict[str, float]:
        broker = make_broker()
        client = gemini_tokens.AsyncClient(API_KEY)

        async def by_hand(i: int) -> None:
            token = await client.create(
                uses=2,
                expire_minutes=15,
                new_session_expire_minutes=1,
                live_connect_constraints=constraints,
                lock_additional_fields=[],
            )
            body = {**token.to_dict(), "liveUrl": token.live_url()}
            json.dumps(body, separators=(",", ":")).encode()

        async def by_broker(i: int) -> None:
            response = await broker.handle(requests[i % 64])
            assert response.status == 200, response

        async def timed(fn: Any) -> float:
            async def worker(k: int) -> None:
                for j in range(calls // 16):
                    await fn(k * calls + j)

            start = time.process_time()
            await asyncio.gather(*(worker(k) for k in range(16)))
            return (time.process_time() - start) / calls * 1e6

        await timed(by_hand)
        await timed(by_broker)
        hand, brokered = [], []
        for _ in range(rounds):
            hand.append(await timed(by_hand))
            brokered.append(await timed(by_broker))
        await broker.aclose()
        await client.close()
        return {"create": statistics.median(hand), "broker": statistics.median(brokered)}

    return asyncio.run(run())


# -- load ---------------------------------------------------------------------------------


async def _load(port: int, total: int, concurrency: int) -> tuple[float, list[float]]:
    import aiohttp

    url = f"http://127.0.0.1:{port}/token"
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        remaining = total

        async def caller(k: int) -> None:
            nonlocal remaining
            headers = {"Authorization": f"Bearer user-{k}"}
            while remaining > 0:
                remaining -= 1
                start = time.perf_counter()
                async with session.post(url, headers=headers) as response:
                    await response.read()
                    statuses[response.status] = statuses.get(response.status, 0) + 1
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(caller(k) for k in range(concurrency)))
        wall = time.perf_counter() - start
    if set(statuses) != {200}:
        raise RuntimeError(f"not every request was minted: {statuses}")
    return wall, latencies


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure_round(app: dict[str, Any], total: int, concurrency: int) -> dict[str, float]:
    before = _cpu_seconds(app["process"].pid)
    wall, latencies = asyncio.run(_load(app["port"], total, concurrency))
    cpu = _cpu_seconds(app["process"].pid) - before
    return {
        "requests": total,
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_us_per_request": cpu / total * 1e6,
        "requests_per_s": total / wall,
        "requests_per_s_per_core": total / cpu if cpu else float("inf"),
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
    }


# -- Redis --------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_server() -> Iterator[str | None]:
    """The tests' throwaway redis-server; None (and the Redis rows skipped) without one."""
    if REDIS_SERVER is None:
        print(f"{NEEDS_REDIS}: skipping broker+redis", file=sys.stderr)
        yield None
        return
    with _redis_server() as uri:
        yield uri


def count_redis_commands(uri: str, app: dict[str, Any], total: int) -> dict[str, Any]:
    """Client commands Redis received per request (MONITOR), during ``total`` requests."""
    monitor = Monitor(uri)
    try:
        asyncio.run(_load(app["port"], total, 8))
        seen = monitor.commands(settle=0.5)
    finally:
        monitor.close()
    commands: dict[str, int] = {}
    for name in seen:
        commands[name] = commands.get(name, 0) + 1
    sent = sum(commands.values())
    return {
        "requests": total,
        "commands": commands,
        "commands_per_request": sent / total,
        **asyncio.run(limiter_round_trips(uri, total)),
    }


async def limiter_round_trips(uri: str, total: int) -> dict[str, float]:
    """Round trips and commands per ``enforce`` of the broker's limiter (the app's limits)
    on ``uri``, counted on redis-py's connections in this process."""
    from redis.asyncio.connection import AbstractConnection

    from gemini_tokens.broker._limiter import Limiter

    counts = {"commands": 0, "round_trips": 0, "in_flight": 0}
    send, read = AbstractConnection.send_packed_command, AbstractConnection.read_response

    async def counted_send(self: Any, *args: Any, **kwargs: Any) -> None:
        counts["commands"] += 1
        counts["round_trips"] += counts["in_flight"] == 0
        counts["in_flight"] += 1
        await send(self, *args, **kwargs)

    async def counted_read(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await read(self, *args, **kwargs)
        finally:
            counts["in_flight"] -= 1

    limiter = Limiter(CALLER_LIMITS, GLOBAL_LIMITS, uri)
    try:
        await limiter.enforce("round-trips", "deny")  # connects, loads the scripts
        counts.update(commands=0, round_trips=0)
        AbstractConnection.send_packed_command = counted_send  # type: ignore[method-assign]
        AbstractConnection.read_response = counted_read  # type: ignore[method-assign]
        try:
            for _ in range(total):
                await limiter.enforce("round-trips", "deny")
        finally:
            AbstractConnection.send_packed_command = send  # type: ignore[method-assign]
            AbstractConnection.read_response = read  # type: ignore[method-assign]
    finally:
        await limiter.aclose()
    return {
        "round_trips_per_request": counts["round_trips"] / total,
        "limiter_commands_per_request": counts["commands"] / total,
    }


# -- the conductor ------------------------------------------------------------------------


@contextlib.contextmanager
def emulator() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gemini_tokens",
            "emulator",
            "--port",
            str(port),
            "--api-key",
            API_KEY,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@contextlib.contextmanager
def app_process(kind: str, base_url: str, storage_uri: str) -> Iterator[dict[str, Any]]:
    port = free_port()
    env = {**os.environ, "GEMINI_API_KEY": API_KEY, "GEMINI_BASE_URL": base_url}
    env["PYTHONPATH"] = str(HERE.parent) + os.pathsep + env.get("PYTHONPATH", "")
    process = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__)),
            "--serve",
            kind,
            "--port",
            str(port),
            "--storage",
            storage_uri,
            *(["--no-budgets"] if LIVE_MINUTES is None else []),
        ],
        env=env,
    )
    try:
        _wait_port(port, process)
        yield {"kind": kind, "port": port, "process": process}
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per round and app")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="1 round of 500 requests")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--storage", default="memory://", help=argparse.SUPPRESS)
    parser.add_argument(
        "--no-budgets", action="store_true", help="the broker apps without Live-minute budgets"
    )
    args = parser.parse_args()
    global LIVE_MINUTES, GLOBAL_LIVE_MINUTES
    if args.no_budgets:
        LIVE_MINUTES = GLOBAL_LIVE_MINUTES = None
    if args.serve:
        serve(args.serve, args.port, args.storage)
        return
    if args.quick:
        args.requests, args.rounds = 500, 1

    overhead = broker_overhead_us(5000 if not args.quick else 1000)
    print(f"broker's own steps: {overhead:.1f} µs CPU per decision", file=sys.stderr)
    results: dict[str, list[dict[str, float]]] = {}
    redis_counts: dict[str, Any] | None = None
    with emulator() as base_url, redis_server() as redis_uri, contextlib.ExitStack() as stack:
        apps = {}
        for kind in APPS:
            if kind == REDIS and redis_uri is None:
                continue
            storage = redis_uri if kind == REDIS and redis_uri else "memory://"
            apps[kind] = stack.enter_context(app_process(kind, base_url, storage))
        direct = broker_vs_create_us(base_url, 1000, args.rounds)
        print(
            f"in-process: broker.handle {direct['broker']:.0f} µs, create by hand "
            f"{direct['create']:.0f} µs",
            file=sys.stderr,
        )
        for app in apps.values():  # warm-up: imports, pools, Redis scripts
            asyncio.run(_load(app["port"], 300, args.concurrency))
        for number in range(args.rounds):
            for kind, app in apps.items():
                result = measure_round(app, args.requests, args.concurrency)
                results.setdefault(kind, []).append(result)
                print(
                    f"round {number + 1} {kind}: {result['requests_per_s']:.0f} req/s, "
                    f"{result['cpu_us_per_request']:.0f} µs CPU/req",
                    file=sys.stderr,
                )
        if REDIS in apps and redis_uri is not None:
            redis_counts = count_redis_commands(redis_uri, apps[REDIS], 200)

    summary = {
        kind: {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
        for kind, rounds in results.items()
    }
    broker_cpu = summary[BROKER]["cpu_us_per_request"]
    report = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
        "config": {
            "requests": args.requests,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "caller_limits": CALLER_LIMITS,
            "global_limits": GLOBAL_LIMITS,
            "live_minutes": LIVE_MINUTES,
            "global_live_minutes": GLOBAL_LIVE_MINUTES,
        },
        "apps": summary,
        "rounds": results,
        "broker_steps_us": overhead,
        "broker_steps_share": overhead / broker_cpu,
        "in_process": direct,
        "broker_overhead_us": direct["broker"] - direct["create"],
        "broker_overhead_share": (direct["broker"] - direct["create"]) / broker_cpu,
        "broker_minus_hand_us": broker_cpu - summary[HAND]["cpu_us_per_request"],
        "redis": redis_counts,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")

    print("| app | req/s per core | req/s (wall) | CPU µs/req | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for kind, row in summary.items():
        print(
            f"| {kind} | {row['requests_per_s_per_core']:.0f} | {row['requests_per_s']:.0f} "
            f"| {row['cpu_us_per_request']:.0f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} |"
        )
    share = report["broker_overhead_share"]
    added = report["broker_overhead_us"]
    print(
        f"\nbroker overhead: {added:.0f} µs CPU per request (handle() {direct['broker']:.0f} "
        f"- the same token by hand {direct['create']:.0f}, in-process) = {share:.1%} of the "
        f"broker app's {broker_cpu:.0f} µs per request (target < 15 %: "
        f"{'met' if share < 0.15 else 'MISSED'}); its steps alone, mint replaced: "
        f"{overhead:.0f} µs ({report['broker_steps_share']:.1%}); whole apps, broker - "
        f"hand (gemini_tokens): {report['broker_minus_hand_us']:.0f} µs"
    )
    if redis_counts is not None:
        print(
            f"Redis: {redis_counts['commands_per_request']:.2f} commands per request "
            f"({redis_counts['commands']}), in {redis_counts['round_trips_per_request']:.2f} "
            "round trips (the caller's limits, then the global ones with their windows' stats)"
        )


if __name__ == "__main__":
    main()
