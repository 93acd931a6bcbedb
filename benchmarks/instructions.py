"""Instructions per call under callgrind: a CPU measure that machine noise does not move.

CPU time on a shared virtual machine moves by 10-20 % between runs; the number of instructions
a call executes does not. This script counts them (valgrind's callgrind, user space only: the
kernel's share of a syscall is not counted) for the raw-aiohttp floor and for
``gemini_tokens.AsyncClient``, sequentially and at concurrency 32, against the same loopback
server as ``bench.py``. Each figure is the difference between two runs of different lengths,
so start-up and imports cancel out.

Run: ``python benchmarks/instructions.py`` (needs ``valgrind``; about a minute).

``--steps`` counts instead each step of the data path on its own (validation, the wire body,
its JSON, the parse, and the attrs models they build), in a fresh interpreter each, to show
where a call's instructions go (about two minutes).
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


def callgrind(code: str, *args: str) -> int:
    """Instructions of a fresh interpreter running ``code`` with ``args`` (callgrind's
    'Collected' total)."""
    result = subprocess.run(
        [
            "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
            sys.executable, "-c", code, *args,
        ],
        capture_output=True,
        text=True,
        # A fixed hash seed: dict layouts, and so the counts, are the same in every run.
        env={"BENCH_CONSTRAINTS": json.dumps(CONSTRAINTS), "PATH": "/usr/bin:/bin",
             "PYTHONHASHSEED": "0"},
        check=True,
    )  # fmt: skip
    match = re.search(r"Collected : (\d+)", result.stderr)
    if match is None:
        raise SystemExit(f"callgrind gave no total:\n{result.stderr[-2000:]}")
    return int(match.group(1))


def count(client: str, port: str, concurrency: int, rounds: int) -> int:
    """Instructions of one worker run."""
    return callgrind(WORKER, client, port, str(concurrency), str(rounds))


# --steps: each step of the data path alone, with what it needs made beforehand.
STEP_SETUP = """
import datetime as dt, json, os, sys
import gemini_tokens._client as client
from gemini_tokens._converters import body_bytes, body_for, setup_to_wire, structure_constraints
from gemini_tokens._models import (
    EphemeralToken, LiveConnectConfig, LiveConnectConstraints, TokenRequest,
)
from gemini_tokens._parse import parse_token
from gemini_tokens._request import build_request
from gemini_tokens._times import format_time
from gemini_tokens._transport import Reply
client._load_transport()  # what a client builds when it is made
C = json.loads(os.environ["BENCH_CONSTRAINTS"])
request = build_request(live_connect_constraints=C, lock_additional_fields=[])
body = body_for(request)
answer = json.dumps(dict(body, name="auth_tokens/" + "x" * 40)).encode()
payload = json.loads(answer)
now = request.expire_time
modalities = request.constraints.config.response_modalities
def step():
    STEP
step()
for _ in range(int(sys.argv[1])):
    step()
os._exit(0)
"""
#: (label, statement): the whole steps first, then parts of them (indented labels).
STEPS = (
    ("validation: `build_request(...)`", "build_request(live_connect_constraints=C, "
     "lock_additional_fields=[])"),
    ("  of which `structure_constraints(...)`", "structure_constraints(C)"),
    ("  of which `LiveConnectConfig(...)`, a frozen attrs class of 24 fields",
     "LiveConnectConfig(response_modalities=modalities, temperature=0.7)"),
    ("  of which `LiveConnectConstraints(...)`, 2 fields", "LiveConnectConstraints("
     "model='m', config=request.constraints.config)"),
    ("  of which `TokenRequest(...)`, 5 fields", "TokenRequest(uses=1, expire_time=now, "
     "new_session_expire_time=now, constraints=None, lock_additional_fields=())"),
    ("the wire body: `body_for(request)`", "body_for(request)"),
    ("  of which `setup_to_wire(...)`", "setup_to_wire(request.constraints)"),
    ("  of which two `format_time(...)`", "format_time(now); format_time(now)"),
    ("its JSON: `body_bytes(body)`", "body_bytes(body)"),
    ("the transport's `Reply(...)`, 5 fields", "Reply(status=200, "
     "content_type='application/json', retry_after=None, body=answer, complete=True)"),
    ("the answer's JSON: `json.loads` (the floor's too)", "json.loads(answer)"),
    ("the parse: `parse_token(...)`", "parse_token(payload, request, body, status=200, "
     "base_url='http://127.0.0.1', api_version='v1alpha')"),
    ("  of which `EphemeralToken(...)`, 9 fields", "EphemeralToken(name='auth_tokens/x', "
     "expire_time=now, new_session_expire_time=now, uses=1, live_connect_constraints=None, "
     "locked_fields=(), setup_json={}, base_url='http://127.0.0.1', api_version='v1alpha')"),
)  # fmt: skip


def count_step(statement: str, runs: int) -> int:
    """Instructions of a fresh interpreter running ``statement`` ``runs`` times."""
    return callgrind(STEP_SETUP.replace("STEP", statement), str(runs))


def steps() -> None:
    """Print the instructions of each step of the data path, on its own."""

    def per_run(statement: str) -> float:
        return (count_step(statement, 3000) - count_step(statement, 1000)) / 2000

    empty = per_run("pass")
    print("| step | instructions per call |")
    print("|---|---:|")
    for label, statement in STEPS:
        indent = "&nbsp;&nbsp;" if label.startswith("  ") else ""
        print(f"| {indent}{label.strip()} | {per_run(statement) - empty:,.0f} |")


def main() -> int:
    if shutil.which("valgrind") is None:
        print("needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    # Compile (and cache) every module the runs import, outside valgrind: a stale .pyc
    # recompiled inside one counted run of a pair would be counted as the calls' work.
    subprocess.run(
        [sys.executable, "-c", STEP_SETUP.replace("STEP", "pass"), "1"],
        env={"BENCH_CONSTRAINTS": json.dumps(CONSTRAINTS), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    if "--steps" in sys.argv[1:]:
        steps()
        return 0
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
