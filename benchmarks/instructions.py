"""Instructions per call under callgrind: a CPU measure that machine noise does not move.

CPU time on a shared virtual machine moves by 10-20 % between runs; the number of instructions
a call executes does not. This script counts them (valgrind's callgrind, user space only: the
kernel's share of a syscall is not counted) for the raw-aiohttp floor and for
``gemini_tokens.AsyncClient``, sequentially and at concurrency 32, against the same loopback
server as ``bench.py``. Each figure is the difference between two runs of different lengths,
so start-up and imports cancel out.

Run: ``python benchmarks/instructions.py`` (needs ``valgrind``; about a minute).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

from bench import loopback_server  # the same server process as the benchmark

CONSTRAINTS = {
    "model": "gemini-2.5-flash-native-audio-preview-12-2025",
    "config": {"response_modalities": ["AUDIO"], "temperature": 0.7},
}

# The worker, run under callgrind: ``client port concurrency rounds`` (10 calls per caller).
WORKER = """
import asyncio, json, os, sys
client, port, concurrency, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
import aiohttp, gemini_tokens
from gemini_tokens._converters import body_for
from gemini_tokens._request import build_request
C = json.loads(os.environ["BENCH_CONSTRAINTS"])
base = f"http://127.0.0.1:{port}"
body = json.dumps(body_for(build_request(live_connect_constraints=C, lock_additional_fields=[])),
                  separators=(",", ":")).encode()
headers = {"x-goog-api-key": "k", "Content-Type": "application/json", "User-Agent": "bench"}
# The floor makes the very request AsyncClient makes: same body, no redirects, same timeouts.
timeout = aiohttp.ClientTimeout(total=30, connect=10)
async def main():
    if client == "floor":
        session = aiohttp.ClientSession()
        async def mint():
            async with session.post(base + "/v1alpha/auth_tokens", data=body, headers=headers,
                                    allow_redirects=False, timeout=timeout) as r:
                return json.loads(await r.read())["name"]
    else:
        gt = gemini_tokens.AsyncClient("k", base_url=base)
        async def mint():
            token = await gt.create(live_connect_constraints=C, lock_additional_fields=[])
            return token.name
    async def caller():
        for _ in range(10):
            await mint()
    await caller()  # warm-up: connections, caches, lazy imports
    for _ in range(rounds):
        await asyncio.gather(*(caller() for _ in range(concurrency)))
    os._exit(0)  # skip teardown: it is not part of a call
asyncio.run(main())
"""


def count(client: str, port: str, concurrency: int, rounds: int) -> int:
    """Instructions of one worker run (callgrind's 'Collected' total)."""
    result = subprocess.run(
        [
            "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
            sys.executable, "-c", WORKER, client, port, str(concurrency), str(rounds),
        ],
        capture_output=True,
        text=True,
        env={"BENCH_CONSTRAINTS": json.dumps(CONSTRAINTS), "PATH": "/usr/bin:/bin"},
        check=True,
    )  # fmt: skip
    match = re.search(r"Collected : (\d+)", result.stderr)
    if match is None:
        raise SystemExit(f"callgrind gave no total:\n{result.stderr[-2000:]}")
    return int(match.group(1))


def main() -> int:
    if shutil.which("valgrind") is None:
        print("needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    with loopback_server() as base_url:
        port = base_url.rsplit(":", 1)[1]
        print("| concurrency | floor (instructions/call) | AsyncClient | ÷ floor |")
        print("|---:|---:|---:|---:|")
        for concurrency in (1, 32):
            short, long = (20, 60) if concurrency == 1 else (2, 6)
            calls = (long - short) * concurrency * 10
            per_call = {
                client: (
                    count(client, port, concurrency, long) - count(client, port, concurrency, short)
                )
                / calls
                for client in ("floor", "AsyncClient")
            }
            ratio = per_call["AsyncClient"] / per_call["floor"]
            print(
                f"| {concurrency} | {per_call['floor']:,.0f} | {per_call['AsyncClient']:,.0f} "
                f"| {ratio:.2f}x |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
