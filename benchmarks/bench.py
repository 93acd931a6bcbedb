"""Benchmark: the cost of minting one token, gemini_tokens against the official SDK.

One run compares, against the same loopback server (``server.py``, its own process):

- ``aiohttp`` (the floor): a raw ``aiohttp.ClientSession.post`` of the very body
  gemini_tokens sends, then ``json.loads`` of the answer. Nothing can be cheaper.
- ``google-genai``: ``client.aio.auth_tokens.create``, the official SDK.
- ``AsyncClient``: ``gemini_tokens.AsyncClient.create``.
- ``Client``: ``gemini_tokens.Client.create``, the sync facade.
- ``create``: the one-shot ``gemini_tokens.create`` (a shared default client).

Every client mints with the same options, passed as plain dicts on every call: ``uses=1``, a
model, ``response_modalities=["AUDIO"]``, ``temperature=0.7`` and
``lock_additional_fields=[]``.

Each client runs in its own worker process, so the CPU time measured (``time.process_time``:
all threads of the worker, the sync facade's loop thread included; never the server's) and
the RSS are that client's alone. Timing rounds are interleaved across clients, so a burst of
noise on this shared machine hits them all, and each figure is the median of the rounds. The
leak check uses a fresh worker per client: 20,000 calls at concurrency 32, peak RSS read after
5,000 and after 20,000. Import times are medians of fresh interpreters.

Run ``python benchmarks/bench.py`` (or ``nox -s bench``). It prints a markdown table and
writes ``benchmarks/results/latest.json``; ``--compare OLD.json`` prints how each figure moved;
``--profile AsyncClient`` prints where one client spends its time (needs pyinstrument).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import os
import platform
import queue
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results" / "latest.json"
API_KEY = "bench-key-not-a-secret"
MODEL = "gemini-live-2.5-flash-preview"
#: The options every client mints with, as a user would write them.
CONSTRAINTS: dict[str, Any] = {
    "model": MODEL,
    "config": {"response_modalities": ["AUDIO"], "temperature": 0.7},
}

FLOOR, GENAI = "aiohttp", "google-genai"
CLIENTS = (FLOOR, GENAI, "AsyncClient", "Client", "create")
LABELS = {
    FLOOR: "aiohttp (floor)",
    GENAI: "google-genai",
    "AsyncClient": "gt.AsyncClient",
    "Client": "gt.Client (sync)",
    "create": "gt.create (one-shot)",
}
IMPORTS = ("gemini_tokens", "google.genai", "aiohttp")
#: glibc's allocator settings for every worker. asyncio reads each response into a 256 KiB
#: buffer; with glibc's defaults, whether freeing it costs system calls (an mmap/munmap pair,
#: or a heap trim) depends on where it lands in the heap, which differs from one process to
#: the next and moved a client's CPU per call by 20 µs between otherwise equal runs. Fixed
#: thresholds put every client in the same state: no allocator system call per response.
#: (The same setting can help a busy token server; see docs/performance.md.)
PINNED_MALLOC = "glibc.malloc.mmap_threshold=4194304:glibc.malloc.trim_threshold=16777216"
REPLY = "@@bench "  # prefixes the worker's answers; anything else on its stdout is ignored

# -- the worker: one client in its own process ----------------------------------------------


def _rss_kib() -> tuple[int, int]:
    """(current RSS, peak RSS) of this process, in KiB, from /proc (Linux)."""
    current = peak = 0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1])
    return current, peak or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _split(n: int, parts: int) -> list[int]:
    base, extra = divmod(n, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _check(name: Any) -> None:
    if not (isinstance(name, str) and name.startswith("auth_tokens/")):
        raise RuntimeError(f"not a token name: {type(name).__name__}")


class _AsyncRunner:
    """Runs an async mint function on one event loop: 1 or ``c`` concurrent callers."""

    def __init__(self, make: Callable[[], Any]) -> None:
        import asyncio

        self._loop = asyncio.new_event_loop()
        self._mint, self._close = self._loop.run_until_complete(make())

    def run(self, concurrency: int, n: int) -> int:
        import asyncio

        mint = self._mint

        async def caller(k: int) -> int:
            errors = 0
            for _ in range(k):
                try:
                    _check(await mint())
                except Exception as exc:
                    errors += 1
                    if errors == 1:
                        print(f"error: {type(exc).__name__}: {exc}"[:300], file=sys.stderr)
            return errors

        async def everyone() -> int:
            if concurrency == 1:
                return await caller(n)
            counts = await asyncio.gather(*(caller(k) for k in _split(n, concurrency)))
            return sum(counts)

        return self._loop.run_until_complete(everyone())

    def close(self) -> None:
        self._loop.run_until_complete(self._close())
        self._loop.close()


class _ThreadRunner:
    """Runs a blocking mint function: in this thread, or in ``c`` threads kept between runs."""

    def __init__(self, mint: Callable[[], Any], close: Callable[[], None]) -> None:
        self._mint, self._close = mint, close
        self._gangs: dict[
            int, tuple[list[queue.SimpleQueue[int | None]], queue.SimpleQueue[int]]
        ] = {}

    def _caller(self, k: int) -> int:
        errors = 0
        for _ in range(k):
            try:
                _check(self._mint())
            except Exception as exc:
                errors += 1
                if errors == 1:
                    print(f"error: {type(exc).__name__}: {exc}"[:300], file=sys.stderr)
        return errors

    def _gang(
        self, size: int
    ) -> tuple[list[queue.SimpleQueue[int | None]], queue.SimpleQueue[int]]:
        if size not in self._gangs:
            done: queue.SimpleQueue[int] = queue.SimpleQueue()
            jobs: list[queue.SimpleQueue[int | None]] = []

            def loop(inbox: queue.SimpleQueue[int | None]) -> None:
                while (k := inbox.get()) is not None:
                    done.put(self._caller(k))

            for _ in range(size):
                inbox: queue.SimpleQueue[int | None] = queue.SimpleQueue()
                threading.Thread(target=loop, args=(inbox,), daemon=True).start()
                jobs.append(inbox)
            self._gangs[size] = (jobs, done)
        return self._gangs[size]

    def prepare(self, concurrency: int) -> None:
        """Start the threads outside the measured time."""
        if concurrency > 1:
            self._gang(concurrency)

    def run(self, concurrency: int, n: int) -> int:
        if concurrency == 1:
            return self._caller(n)
        jobs, done = self._gang(concurrency)
        for inbox, k in zip(jobs, _split(n, concurrency), strict=True):
            inbox.put(k)
        return sum(done.get() for _ in jobs)

    def close(self) -> None:
        for jobs, _ in self._gangs.values():
            for inbox in jobs:
                inbox.put(None)
        self._close()


def _make_runner(client: str, base_url: str) -> Any:
    if client == FLOOR:

        async def make_floor() -> Any:
            import aiohttp

            import gemini_tokens

            # The exact body gemini_tokens sends for these options, serialised once.
            from gemini_tokens._converters import body_for
            from gemini_tokens._request import build_request

            body = json.dumps(
                body_for(
                    build_request(
                        uses=1, live_connect_constraints=CONSTRAINTS, lock_additional_fields=[]
                    )
                ),
                separators=(",", ":"),
            ).encode()
            headers = {
                "x-goog-api-key": API_KEY,
                "Content-Type": "application/json",
                "User-Agent": f"bench/{gemini_tokens.__version__}",
            }
            url = f"{base_url}/v1alpha/auth_tokens"
            session = aiohttp.ClientSession()

            # The same request options as AsyncClient's: aiohttp's defaults (redirects
            # followed) cost more, and the floor must be the cheapest way to make this call.
            timeout = aiohttp.ClientTimeout(total=30, connect=10)

            async def mint() -> Any:
                async with session.post(
                    url, data=body, headers=headers, allow_redirects=False, timeout=timeout
                ) as response:
                    payload = json.loads(await response.read())
                    if response.status != 200:
                        raise RuntimeError(f"status {response.status}")
                return payload["name"]

            return mint, session.close

        return _AsyncRunner(make_floor)

    if client == GENAI:

        async def make_genai() -> Any:
            import warnings

            from google import genai
            from google.genai import types

            # auth_tokens is flagged experimental; the warning is noise here.
            warnings.filterwarnings("ignore", category=genai._common.ExperimentalWarning)
            sdk = genai.Client(
                api_key=API_KEY,
                http_options=types.HttpOptions(base_url=base_url, api_version="v1alpha"),
            )
            config = {
                "uses": 1,
                "live_connect_constraints": CONSTRAINTS,
                "lock_additional_fields": [],
            }

            async def mint() -> Any:
                token = await sdk.aio.auth_tokens.create(config=config)
                return token.name

            return mint, sdk.aio.aclose

        return _AsyncRunner(make_genai)

    if client == "AsyncClient":

        async def make_async() -> Any:
            import gemini_tokens

            gt = gemini_tokens.AsyncClient(API_KEY, base_url=base_url)

            async def mint() -> Any:
                token = await gt.create(
                    uses=1, live_connect_constraints=CONSTRAINTS, lock_additional_fields=[]
                )
                return token.name

            return mint, gt.close

        return _AsyncRunner(make_async)

    import gemini_tokens

    if client == "Client":
        sync = gemini_tokens.Client(API_KEY, base_url=base_url)

        def mint_sync() -> Any:
            return sync.create(
                uses=1, live_connect_constraints=CONSTRAINTS, lock_additional_fields=[]
            ).name

        return _ThreadRunner(mint_sync, sync.close)

    if client == "create":
        os.environ["GEMINI_API_KEY"] = API_KEY
        os.environ["GEMINI_BASE_URL"] = base_url

        def mint_oneshot() -> Any:
            return gemini_tokens.create(
                uses=1, live_connect_constraints=CONSTRAINTS, lock_additional_fields=[]
            ).name

        return _ThreadRunner(mint_oneshot, gemini_tokens.close_default_client)

    raise SystemExit(f"unknown client {client!r}")


def worker(client: str, base_url: str) -> None:
    """Serve measurement commands (JSON lines on stdin) for one client; answer on stdout."""
    runner = _make_runner(client, base_url)
    profile = os.environ.get("BENCH_PROFILE")  # a path: pyinstrument's report goes there
    total = 0
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "quit":
            break
        concurrency, n = command["c"], command["n"]
        if isinstance(runner, _ThreadRunner):
            runner.prepare(concurrency)
        profiler = None
        if profile and command.get("profile"):
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0002, async_mode="disabled")
            profiler.start()
        gc0 = sum(g["collections"] for g in gc.get_stats())
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        errors = runner.run(concurrency, n)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        gcs = sum(g["collections"] for g in gc.get_stats()) - gc0
        if profiler is not None:
            profiler.stop()
            Path(profile).write_text(profiler.output_text(unicode=True, show_all=False))
        total += n
        rss, peak = _rss_kib()
        reply = {"n": n, "c": concurrency, "cpu": cpu, "wall": wall, "errors": errors,
                 "user": usage1.ru_utime - usage0.ru_utime,
                 "sys": usage1.ru_stime - usage0.ru_stime,
                 "switches": (usage1.ru_nvcsw + usage1.ru_nivcsw)
                 - (usage0.ru_nvcsw + usage0.ru_nivcsw),
                 "gc": gcs, "rss_kib": rss, "peak_kib": peak, "total": total}  # fmt: skip
        print(REPLY + json.dumps(reply), flush=True)
    runner.close()


# -- the conductor ----------------------------------------------------------------------------


class Worker:
    """A worker process for one client, driven over its stdin/stdout."""

    def __init__(self, client: str, base_url: str, env: dict[str, str] | None = None) -> None:
        self.client = client
        self.calls = 0
        self.errors = 0
        tunables = ":".join(filter(None, (os.environ.get("GLIBC_TUNABLES"), PINNED_MALLOC)))
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", client, base_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "GLIBC_TUNABLES": tunables, **(env or {})},
        )

    def run(self, concurrency: int, n: int, *, profile: bool = False) -> dict[str, Any]:
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        command = {"op": "run", "c": concurrency, "n": n, "profile": profile}
        self._proc.stdin.write(json.dumps(command) + "\n")
        self._proc.stdin.flush()
        for line in self._proc.stdout:
            if line.startswith(REPLY):
                reply: dict[str, Any] = json.loads(line[len(REPLY) :])
                self.calls += n
                self.errors += reply["errors"]
                return reply
        raise RuntimeError(f"the {self.client} worker died (exit {self._proc.wait()})")

    def close(self) -> None:
        assert self._proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ValueError):
            self._proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


@contextlib.contextmanager
def loopback_server() -> Iterator[str]:
    """Start server.py in its own process; yield its base URL."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "server.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError("the loopback server did not start")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # the server stops when its stdin closes
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def server_stats(base_url: str) -> dict[str, int]:
    """How many tokens the server minted and refused."""
    from urllib.request import urlopen

    with urlopen(f"{base_url}/stats", timeout=10) as response:
        stats: dict[str, int] = json.loads(response.read())
    return stats


def import_times(rounds: int) -> dict[str, float]:
    """Median seconds of ``import X`` in a fresh interpreter, rounds interleaved."""
    samples: dict[str, list[float]] = {name: [] for name in IMPORTS}
    for _ in range(rounds):
        for name in IMPORTS:
            code = (
                "import time; t = time.perf_counter(); import " + name + "; "
                "print(time.perf_counter() - t)"
            )
            out = subprocess.run(
                [sys.executable, "-c", code],
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            )
            samples[name].append(float(out.stdout.strip().splitlines()[-1]))
    return {name: statistics.median(values) for name, values in samples.items()}


def machine() -> dict[str, Any]:
    """What this ran on: enough to tell two results apart."""
    cpuinfo: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            key, sep, value = line.partition(":")
            if not sep:
                break  # the first processor is enough
            cpuinfo.setdefault(key.strip(), value.strip())
    memory = "?"
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as info:
        for line in info:
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
                break

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "-"

    u = os.uname()
    return {
        "uname": f"{u.sysname} {u.nodename} {u.release} {u.version} {u.machine}",
        "cpu": cpuinfo.get("model name", platform.processor() or "?"),
        "cpu_family_model": f"{cpuinfo.get('cpu family', '?')}/{cpuinfo.get('model', '?')}",
        "virtualised": "hypervisor" in cpuinfo.get("flags", "").split(),
        "cores": os.cpu_count(),
        "memory": memory,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "packages": {
            d: version(d) for d in ("gemini-tokens", "google-genai", "aiohttp", "attrs", "cattrs")
        },
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run every measurement; return the raw figures per client."""
    clients = args.clients
    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {c: {} for c in clients}
    with loopback_server() as base_url:
        log(f"server at {base_url}; import times ({args.import_rounds} fresh interpreters each)")
        imports = import_times(args.import_rounds)
        log("  " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in imports.items()))

        # Several processes per client, taking the rounds in turn: a process can be slower
        # or faster than its twin for its whole life (memory layout, hash seed), and one
        # process's luck must not decide a figure.
        procs = {c: [Worker(c, base_url) for _ in range(args.procs)] for c in clients}
        calls = errors = 0
        try:
            log(f"warm-up: {args.warmup} calls each ({args.procs} processes per client)")
            for ws in procs.values():
                for w in ws:
                    w.run(32, args.warmup)
                    w.run(1, args.warmup // 10)
            modes = (("seq", 1, args.seq), ("c32", 32, args.c32), ("c256", 256, args.c256))
            samples: dict[str, dict[str, list[dict[str, Any]]]] = {
                c: {m: [] for m, _, _ in modes} for c in clients
            }
            for r in range(args.rounds):
                order = clients[r % len(clients) :] + clients[: r % len(clients)]
                for mode, concurrency, n in modes:
                    for c in order:
                        w = procs[c][r % args.procs]
                        samples[c][mode].append(w.run(concurrency, n))
                log(f"round {r + 1}/{args.rounds} done ({time.perf_counter() - started:.0f}s)")
        finally:
            for w in (w for ws in procs.values() for w in ws):
                w.close()
                calls, errors = calls + w.calls, errors + w.errors
        for c in clients:
            s = samples[c]
            results[c]["cpu_us_seq"] = _median_us(s["seq"], "cpu")
            results[c]["wall_us_seq"] = _median_us(s["seq"], "wall")
            results[c]["cpu_us_c32"] = _median_us(s["c32"], "cpu")
            results[c]["wall_us_c32"] = _median_us(s["c32"], "wall")
            results[c]["cpu_us_c256"] = _median_us(s["c256"], "cpu")
            results[c]["calls_per_s_c256"] = statistics.median(
                x["n"] / x["wall"] for x in s["c256"]
            )
            # Every round's figures, so that two runs can be compared beyond their medians.
            results[c]["rounds"] = {
                mode: [
                    {
                        "cpu_us": x["cpu"] / x["n"] * 1e6,
                        "wall_us": x["wall"] / x["n"] * 1e6,
                        "user_us": x["user"] / x["n"] * 1e6,
                        "sys_us": x["sys"] / x["n"] * 1e6,
                        "context_switches": x["switches"] / x["n"],
                        "gc_collections": x["gc"],
                    }
                    for x in s[mode]
                ]
                for mode in s
            }

        log(f"leak check: {args.rss_calls} calls at concurrency 32, a fresh worker each")
        for c in clients:
            w = Worker(c, base_url)
            try:
                first = w.run(32, args.rss_warm)
                last = w.run(32, args.rss_calls - args.rss_warm)
            finally:
                w.close()
                calls, errors = calls + w.calls, errors + w.errors
            results[c]["peak_rss_mib_warm"] = first["peak_kib"] / 1024
            results[c]["peak_rss_mib"] = last["peak_kib"] / 1024
            results[c]["rss_mib"] = last["rss_kib"] / 1024
            results[c]["rss_growth_pct"] = 100 * (last["peak_kib"] / first["peak_kib"] - 1)
            log(f"  {c}: {first['peak_kib'] / 1024:.1f} -> {last['peak_kib'] / 1024:.1f} MiB")

        stats = server_stats(base_url)
    if stats["minted"] != calls - errors:
        log(f"WARNING: {calls} calls ({errors} failed) but the server minted {stats['minted']}")
    return {
        "results": results,
        "imports_ms": {k: v * 1e3 for k, v in imports.items()},
        "server": {**stats, "calls": calls},
        "errors": errors,
        "seconds": time.perf_counter() - started,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }


def profile(client: str, concurrency: int, *, calls: int) -> str:
    """pyinstrument's report of ``calls`` calls of one client (after a warm-up)."""
    import tempfile

    with loopback_server() as base_url, tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "profile.txt"
        w = Worker(client, base_url, env={"BENCH_PROFILE": str(out)})
        try:
            w.run(concurrency, 1000)
            w.run(concurrency, calls, profile=True)
        finally:
            w.close()
        return out.read_text()


def _median_us(samples: list[dict[str, Any]], key: str) -> float:
    return statistics.median(x[key] / x["n"] for x in samples) * 1e6


# -- the report --------------------------------------------------------------------------------

FIGURES = (
    # key, label, format, lower is better
    ("cpu_us_seq", "CPU µs/call, sequential", "{:.0f}", True),
    ("cpu_us_c32", "CPU µs/call, concurrency 32", "{:.0f}", True),
    ("cpu_us_c256", "CPU µs/call, concurrency 256", "{:.0f}", True),
    ("wall_us_seq", "wall µs/call, sequential", "{:.0f}", True),
    ("wall_us_c32", "wall µs/call, concurrency 32", "{:.0f}", True),
    ("calls_per_s_c256", "calls/s, concurrency 256", "{:.0f}", False),
    ("peak_rss_mib_warm", "peak RSS MiB after {warm:,} calls", "{:.1f}", True),
    ("peak_rss_mib", "peak RSS MiB after {total:,} calls", "{:.1f}", True),
    ("rss_growth_pct", "peak RSS growth {warm:,} -> {total:,} calls, %", "{:+.1f}", True),
)


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with its figure and whether it is met."""
    r = report["results"]
    out: list[dict[str, Any]] = []

    def add(name: str, value: float, limit: float, unit: str) -> None:
        out.append({"target": name, "value": value, "limit": limit, "unit": unit,
                    "met": value <= limit})  # fmt: skip

    if FLOOR in r and "AsyncClient" in r:
        for mode, label in (("seq", "sequential"), ("c32", "concurrency 32")):
            ratio = r["AsyncClient"][f"cpu_us_{mode}"] / r[FLOOR][f"cpu_us_{mode}"]
            add(f"AsyncClient CPU/call vs floor, {label}", ratio, 1.3, "x")
    if "AsyncClient" in r and "Client" in r:
        for mode, label in (("seq", "sequential"), ("c32", "concurrency 32")):
            ratio = r["Client"][f"cpu_us_{mode}"] / r["AsyncClient"][f"cpu_us_{mode}"]
            add(f"Client CPU/call vs AsyncClient, {label}", ratio, 1.7, "x")
    if GENAI in r:
        # "A small fraction of google-genai's" (issue #10), read as at most half.
        for client in ("AsyncClient", "Client"):
            if client in r:
                for mode, label in (("seq", "sequential"), ("c32", "concurrency 32")):
                    ratio = r[client][f"cpu_us_{mode}"] / r[GENAI][f"cpu_us_{mode}"]
                    add(f"{client} CPU/call vs google-genai, {label}", ratio, 0.5, "x")
    imports = report["imports_ms"]
    add(
        "import gemini_tokens vs import google.genai",
        imports["gemini_tokens"] / imports["google.genai"],
        0.25,
        "x",
    )
    for c in r:
        span = f"{report['config']['rss_warm']:,} -> {report['config']['rss_calls']:,}"
        add(f"{LABELS[c]}: peak RSS growth {span}", abs(r[c]["rss_growth_pct"]), 5, "%")
    return out


def render(report: dict[str, Any]) -> str:
    """The report as markdown: figures with ratios, imports, targets."""
    r = report["results"]
    clients = list(r)
    lines = [
        "| figure | " + " | ".join(LABELS[c] for c in clients) + " |",
        "|---|" + "---:|" * len(clients),
    ]
    sizes = {"warm": report["config"]["rss_warm"], "total": report["config"]["rss_calls"]}
    for key, label, fmt, _ in FIGURES:
        label = label.format(**sizes)
        lines.append(f"| {label} | " + " | ".join(fmt.format(r[c][key]) for c in clients) + " |")
        if key == "rss_growth_pct":
            continue
        for ref, ref_label in ((GENAI, "google-genai"), (FLOOR, "floor")):
            if ref in r and r[ref][key]:
                ratios = (f"{r[c][key] / r[ref][key]:.2f}x" for c in clients)
                lines.append(f"| &nbsp;&nbsp;÷ {ref_label} | " + " | ".join(ratios) + " |")
    imports = report["imports_ms"]
    genai_ms = imports["google.genai"]
    lines += [
        "",
        "| import (fresh interpreter, median) | ms | ÷ google.genai |",
        "|---|---:|---:|",
        *(f"| `import {name}` | {ms:.1f} | {ms / genai_ms:.2f}x |" for name, ms in imports.items()),
        "",
        "| target | figure | limit | met |",
        "|---|---:|---:|:---:|",
    ]
    for t in report["targets"]:
        value = (
            f"{t['value']:.2f}{t['unit']}" if t["unit"] == "x" else f"{t['value']:.1f} {t['unit']}"
        )
        limit = f"{t['limit']:g}{t['unit']}" if t["unit"] == "x" else f"{t['limit']:g} {t['unit']}"
        lines.append(f"| {t['target']} | {value} | {limit} | {'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines)


def compare(new: dict[str, Any], old: dict[str, Any]) -> str:
    """How each figure moved between two reports (new ÷ old)."""
    lines = ["| figure | client | old | new | new ÷ old |", "|---|---|---:|---:|---:|"]
    sizes = {"warm": new["config"]["rss_warm"], "total": new["config"]["rss_calls"]}
    for key, label, fmt, _ in FIGURES:
        label = label.format(**sizes)
        for c, figures in new["results"].items():
            before = old.get("results", {}).get(c, {}).get(key)
            if before is None:
                continue
            after = figures[key]
            ratio = f"{after / before:.2f}" if before else "-"
            lines.append(
                f"| {label} | {LABELS[c]} | {fmt.format(before)} | {fmt.format(after)} | {ratio} |"
            )
    return "\n".join(lines)


def _time_is_up(signum: int, frame: Any) -> None:
    raise SystemExit("the benchmark ran past --time-limit; stopped")


def log(message: str) -> None:
    """Progress on stderr, so stdout is just the report."""
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse the options, measure, print the table, write the JSON."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        worker(argv[1], argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated subset")
    parser.add_argument("--rounds", type=int, default=11, help="timing rounds (median taken)")
    parser.add_argument(
        "--procs", type=int, default=3, help="worker processes per client (rounds in turn)"
    )
    parser.add_argument("--seq", type=int, default=1000, help="sequential calls per round")
    parser.add_argument("--c32", type=int, default=960, help="calls per round at concurrency 32")
    parser.add_argument("--c256", type=int, default=2560, help="calls per round at concurrency 256")
    parser.add_argument("--warmup", type=int, default=1000, help="warm-up calls per client")
    parser.add_argument("--rss-calls", type=int, default=20_000, help="calls in the leak check")
    parser.add_argument("--rss-warm", type=int, default=5_000, help="calls before the first RSS")
    parser.add_argument("--import-rounds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--time-limit", type=int, default=900, metavar="S", help="give up after S seconds"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the JSON report")
    parser.add_argument("--compare", type=Path, help="an earlier JSON report to compare with")
    parser.add_argument(
        "--profile",
        metavar="CLIENT",
        help="instead of benchmarking, profile one client with pyinstrument and print it",
    )
    parser.add_argument("--profile-concurrency", type=int, default=32, metavar="N")
    args = parser.parse_args(argv)
    args.clients = [c for c in args.clients.split(",") if c]
    unknown = set(args.clients) - set(CLIENTS)
    if unknown:
        parser.error(f"unknown clients {sorted(unknown)}; choose from {', '.join(CLIENTS)}")
    if args.profile:
        if args.profile not in CLIENTS:
            parser.error(f"unknown client {args.profile!r}; choose from {', '.join(CLIENTS)}")
        print(profile(args.profile, args.profile_concurrency, calls=20_000))
        return 0
    if args.quick:
        args.rounds, args.seq, args.c32, args.c256, args.warmup = 2, 50, 320, 512, 100
        args.procs = 1
        args.rss_calls, args.rss_warm, args.import_rounds = 2000, 500, 3

    # Never outlive a stuck server or worker: every process is ended on the way out.
    signal.signal(signal.SIGALRM, _time_is_up)
    signal.alarm(args.time_limit)
    report = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {
            k: getattr(args, k)
            for k in (
                "rounds",
                "procs",
                "seq",
                "c32",
                "c256",
                "warmup",
                "rss_calls",
                "rss_warm",
                "import_rounds",
                "quick",
            )
        },
        **measure(args),
    }
    report["targets"] = targets(report)
    text = render(report)
    m = report["machine"]
    print(f"gemini-tokens benchmark, {report['date']}, {report['seconds']:.0f}s")
    print(f"machine: {m['uname']}")
    print(
        f"CPU: {m['cpu']} (family/model {m['cpu_family_model']}), {m['cores']} cores"
        f"{', virtualised' if m['virtualised'] else ''}; memory {m['memory']}; {m['python']}; "
        f"load average at start {m['load_average']}"
    )
    print("packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()))
    print(f"server: {report['server']}")
    print()
    print(text)
    if report["errors"]:
        print(f"\nERRORS: {report['errors']} calls failed (see stderr)")
    if args.compare:
        print("\n" + compare(report, json.loads(args.compare.read_text())))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    log(f"wrote {args.output}")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
