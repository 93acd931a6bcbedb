"""Across processes, as real processes: fork, gunicorn, process pools, Celery (issue 11)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import multiprocessing
import os
import pathlib
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

from gemini_tokens import AsyncClient, Client, RateLimitError, ServerError
from gemini_tokens.broker import TokenBroker, WSGIApp
from gemini_tokens.testing import Emulator

from .apps import workers
from .broker.helpers import authorize, policy
from .conftest import API_KEY, RecordingServer
from .spawn import CELERY_WORKER, env_for, free_port, run_python, start, stop, wait_http
from .test_broker_adapters import wsgi_call
from .test_sync import _run_in_fork

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")


def _get_json(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# --- os.fork() after a mint, then a call from a new thread in the child ----------------------


@needs_fork
def test_fork_after_a_mint_then_new_threads_in_the_child_mint(server: RecordingServer) -> None:
    """A start-up mint in the parent, then gunicorn-gthread/uvicorn-executor style calls."""
    client = Client(API_KEY, base_url=server.base_url)
    client.create(uses=1)  # the parent's loop thread now exists
    loop_thread = client._runner._thread
    assert loop_thread is not None

    def in_child() -> str:
        results: dict[str, object] = {}

        def from_a_new_thread() -> None:
            # glibc hands this first new thread the parent's loop thread id (often).
            results["same_ident"] = threading.get_ident() == loop_thread.ident
            try:
                results["thread"] = client.create(uses=2).uses
            except Exception as exc:
                results["thread"] = repr(exc)

        worker = threading.Thread(target=from_a_new_thread)
        worker.start()
        worker.join(15)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:  # run_in_executor's shape
            results["pool"] = sorted(
                t.uses or 0 for t in pool.map(lambda i: client.create(uses=i), range(3, 11))
            )
        client.close()
        return json.dumps(results)

    code, text = _run_in_fork(in_child)
    assert code == 0, text
    results = json.loads(text)
    assert results["thread"] == 2, results
    assert results["pool"] == list(range(3, 11))
    assert client.create(uses=11).uses == 11  # the parent's client is unharmed
    client.close()
    assert len(server.requests) == 1 + 1 + 8 + 1


@needs_fork
def test_a_brokers_wsgi_app_mints_in_a_forked_child(server: RecordingServer) -> None:
    """gunicorn --preload's shape: the parent mints through the broker's WSGI app (its loop
    thread and the AsyncClient's pool now exist), then forks; the child mints from its main
    thread and from a new one, on a loop of its own; the parent's app is unharmed."""
    client = AsyncClient(API_KEY, base_url=server.base_url)
    broker = TokenBroker(authorize=authorize, policy=policy(), audit=None, client=client)
    app = WSGIApp(broker)
    alice = {"Authorization": "Bearer alice-token"}
    assert wsgi_call(app, headers=alice)[0] == 200

    def in_child() -> str:
        results = {"main": wsgi_call(app, headers=alice)[0]}

        def from_a_new_thread() -> None:
            results["thread"] = wsgi_call(app, headers=alice)[0]

        worker = threading.Thread(target=from_a_new_thread)
        worker.start()
        worker.join(15)
        app.close()
        return json.dumps(results)

    code, text = _run_in_fork(in_child)
    assert code == 0, text
    assert json.loads(text) == {"main": 200, "thread": 200}
    assert wsgi_call(app, headers=alice)[0] == 200  # the parent's loop and pool still work
    app.close()
    asyncio.run(client.close())
    assert len(server.requests) == 1 + 2 + 1


_CHILD_CALLS = {
    "child-idle": "",
    "child-calls": "print(client.create(uses=4).uses)",
    "child-calls-from-a-new-thread": (
        "worker = threading.Thread(target=lambda: print(client.create(uses=4).uses))\n"
        "    worker.start(); worker.join()"
    ),
}


@pytest.mark.parametrize("child", list(_CHILD_CALLS))
@needs_fork
def test_a_forked_child_exits_without_noise(server: RecordingServer, child: str) -> None:
    """A normal exit in the child runs the exit-time close: no 'Unclosed', no traceback,
    and the parent's client is unharmed."""
    script = f"""
import os, sys, threading, warnings
warnings.simplefilter("error")
warnings.simplefilter("ignore", DeprecationWarning)
import gemini_tokens
client = gemini_tokens.Client({API_KEY!r}, base_url={server.base_url!r})
client.create()
pid = os.fork()
if pid == 0:
    {_CHILD_CALLS[child] or "pass"}
    sys.exit(0)   # a normal exit: atexit hooks and finalizers run in the child
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
print(client.create(uses=6).uses)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == (["6"] if child == "child-idle" else ["4", "6"])
    assert result.stderr == ""


# --- gunicorn -k gthread --preload -----------------------------------------------------------


@pytest.mark.slow
def test_wsgi_app_under_gunicorn_gthread_preload() -> None:
    """Issue 11.2: a start-up mint in the master, then every request mints from a thread."""
    pytest.importorskip("gunicorn", reason="needs gunicorn: pip install -e '.[test]'")
    requests = 24
    with Emulator.running() as emu:
        port = free_port()
        server = start(
            [
                sys.executable, "-m", "gunicorn", "--preload", "-k", "gthread", "--threads", "4",
                "-w", "2", "-b", f"127.0.0.1:{port}", "tests.apps.wsgi_app:app",
            ],
            env_for(emu),
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}/"
            wait_http(f"{url}health", server)
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                results = list(pool.map(lambda _: _get_json(url), range(requests)))
        finally:
            output = stop(server, timeout=30)
        assert [status for status, _ in results] == [200] * requests, (results[:2], output)
        bodies = [body for _, body in results]
        assert len({b["name"] for b in bodies}) == requests
        master = {b["startup_pid"] for b in bodies}
        assert len(master) == 1
        assert master.isdisjoint({b["pid"] for b in bodies})  # minted in forked workers
        assert len(emu.tokens) == requests + 1  # and the master's start-up mint
        assert "Traceback" not in output
        assert "Unclosed" not in output


# --- errors across a process boundary --------------------------------------------------------


def test_a_process_pool_returns_typed_errors_with_their_fields() -> None:
    """Issue 11.3: the worker's RateLimitError / ServerError reach the parent, fields intact,
    and the pool survives (an unpicklable error used to break it)."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: only pickle crosses
    with (
        Emulator.running() as emu,
        concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool,
    ):
        emu.fail_next(status=429, retry_after=30)  # over max_retry_wait: raised, not slept
        with pytest.raises(RateLimitError) as limited:
            pool.submit(workers.mint, emu.base_url, emu.api_key, 2).result(60)
        emu.fail_next(status=503, times=2)
        with pytest.raises(ServerError) as failed:
            pool.submit(workers.mint, emu.base_url, emu.api_key, 1).result(60)
        minted = pool.submit(workers.mint, emu.base_url, emu.api_key, 0).result(60)
    assert type(limited.value) is RateLimitError
    assert limited.value.retry_after == 30
    assert limited.value.status_code == 429
    assert limited.value.status == "RESOURCE_EXHAUSTED"
    assert type(failed.value) is ServerError
    assert failed.value.status_code == 503
    assert failed.value.attempts == 2
    assert "after 2 attempts" in str(failed.value)
    assert str(minted["name"]).startswith("auth_tokens/")
    assert minted["pid"] != os.getpid()


@pytest.mark.slow
def test_celery_recipe_hands_the_caller_a_typed_rate_limit_error(tmp_path: pathlib.Path) -> None:
    """Issue 11.3: through a real worker process and a real result backend (files), the
    caller's ``result.get()`` raises RateLimitError with ``retry_after``."""
    pytest.importorskip("celery", reason="needs celery: pip install -e '.[test]'")
    with Emulator.running() as emu:
        env = env_for(emu, TOKEN_QUEUE_DIR=str(tmp_path))
        worker = start([*CELERY_WORKER, "-c", "1"], env)
        emu.fail_next(status=429, retry_after=45)
        script = (
            "import json\n"
            "import gemini_tokens\n"
            "from examples.celery_app import mint_token\n"
            "try:\n"
            "    mint_token.delay('user1').get(timeout=60)\n"
            "except gemini_tokens.RateLimitError as exc:\n"
            "    print(json.dumps({'type': type(exc).__name__, 'retry_after': exc.retry_after,\n"
            "                      'status_code': exc.status_code, 'text': str(exc)}))\n"
            "print(json.dumps(mint_token.delay('user2').get(timeout=60)['user']))\n"
        )
        try:
            caller = run_python(script, env)
        finally:
            output = stop(worker)
    assert caller.returncode == 0, caller.stderr + output
    error, user = (json.loads(line) for line in caller.stdout.splitlines())
    assert error["type"] == "RateLimitError"
    assert error["retry_after"] == 45
    assert error["status_code"] == 429
    assert "retry after 45s" in error["text"]
    assert user == "user2"
    assert emu.api_key not in caller.stdout + caller.stderr + output
    assert "Traceback" not in output  # an expected error is not logged as a worker crash
