"""The sync facade: scripts, threads, a running loop, fork, and clean shutdown."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

import gemini_tokens
from gemini_tokens import Client, ConfigurationError

from .conftest import API_KEY, RecordingServer


def _loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "gemini-tokens-loop"]


def test_create_and_close_leaves_no_thread(server: RecordingServer) -> None:
    before = len(_loop_threads())
    client = Client(API_KEY, base_url=server.base_url)
    assert len(_loop_threads()) == before  # the loop starts lazily
    token = client.create(uses=2)
    assert token.uses == 2
    assert len(_loop_threads()) == before + 1
    client.close()
    client.close()  # idempotent
    assert len(_loop_threads()) == before
    assert client.closed
    with pytest.raises(ConfigurationError, match="closed"):
        client.create()


def test_no_unclosed_session_warning(server: RecordingServer) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Client(API_KEY, base_url=server.base_url) as client:
            client.create()
        del client
        gc.collect()
    assert [str(w.message) for w in caught] == []


def test_forgotten_client_is_cleaned_up_by_gc(server: RecordingServer) -> None:
    before = len(_loop_threads())
    client = Client(API_KEY, base_url=server.base_url)
    client.create()
    del client
    gc.collect()
    assert len(_loop_threads()) == before


def test_many_threads_share_one_client(server: RecordingServer) -> None:
    with (
        Client(API_KEY, base_url=server.base_url) as client,
        ThreadPoolExecutor(max_workers=16) as pool,
    ):
        tokens = list(pool.map(lambda i: client.create(uses=i), range(64)))
    assert [t.uses for t in tokens] == list(range(64))
    assert len({t.name for t in tokens}) == 64
    assert len(server.requests) == 64


async def test_sync_call_inside_running_loop(server: RecordingServer) -> None:
    """A sync call made in a coroutine neither deadlocks nor raises 'loop already running'."""
    with Client(API_KEY, base_url=server.base_url) as client:
        token = client.create(uses=3)
    assert token.uses == 3


def test_sync_call_from_a_notebook_like_loop(server: RecordingServer) -> None:
    async def cell() -> int | None:
        with Client(API_KEY, base_url=server.base_url) as client:
            return client.create(uses=5).uses

    assert asyncio.run(cell()) == 5


def test_calling_from_its_own_loop_is_refused(server: RecordingServer) -> None:
    with Client(API_KEY, base_url=server.base_url) as client:
        client.create()

        async def inner() -> None:
            client.create()

        future = client._runner.submit(inner())
        with pytest.raises(ConfigurationError, match="its own event loop"):
            future.result(10)


def _run_in_fork(
    work: Callable[[], str], *, meanwhile: Callable[[], object] = lambda: None
) -> tuple[int, str]:
    """Fork; the child runs ``work`` and sends its text back. Returns (exit code, text)."""
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() in a multi-threaded process; that is the scenario.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(read_fd)
            signal.alarm(20)  # a hang fails the test instead of blocking it
            os.write(write_fd, work().encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    meanwhile()
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read_fd) as pipe:
        return os.waitstatus_to_exitcode(status), pipe.read()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_gets_fresh_loop_and_session(server: RecordingServer) -> None:
    """Celery prefork / gunicorn --preload: a client used before fork works in the child."""
    client = Client(API_KEY, base_url=server.base_url)
    parent_token = client.create(uses=1)

    def in_child() -> str:
        token = client.create(uses=7)
        again = client.create(uses=8)
        client.close()
        return json.dumps({"uses": [token.uses, again.uses]})

    code, text = _run_in_fork(in_child)
    assert code == 0
    assert json.loads(text)["uses"] == [7, 8]
    # The parent's client still works after the child used (and closed) its own copy.
    after = client.create(uses=9)
    assert after.uses == 9
    assert parent_token.name != after.name
    client.close()


def test_one_shot_helpers_use_the_environment(
    server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    monkeypatch.setenv("GEMINI_BASE_URL", server.base_url)
    gemini_tokens.close_default_client()
    try:
        token = gemini_tokens.create(uses=2)
        assert token.uses == 2

        async def main() -> int | None:
            first = await gemini_tokens.acreate(uses=3)
            results = await asyncio.gather(*(gemini_tokens.acreate(uses=i) for i in range(5)))
            assert [t.uses for t in results] == list(range(5))
            return first.uses

        assert asyncio.run(main()) == 3
        assert server.requests[0]["headers"]["x-goog-api-key"] == API_KEY
    finally:
        gemini_tokens.close_default_client()


def test_acreate_cancellation_cancels_the_request(
    server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiohttp import web

    release = threading.Event()

    def slow(body: dict[str, object]) -> web.StreamResponse:
        release.wait(5)
        return web.json_response({"name": "auth_tokens/late"})

    server.respond = slow
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    monkeypatch.setenv("GEMINI_BASE_URL", server.base_url)
    gemini_tokens.close_default_client()
    try:

        async def main() -> None:
            task = asyncio.ensure_future(gemini_tokens.acreate())
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
    finally:
        release.set()
        gemini_tokens.close_default_client()


def test_close_during_a_call_fails_the_call_instead_of_hanging(server: RecordingServer) -> None:
    from aiohttp import web

    release = threading.Event()

    def slow(body: dict[str, object]) -> web.StreamResponse:
        release.wait(5)
        return web.json_response({"name": "auth_tokens/late"})

    client = Client(API_KEY, base_url=server.base_url)
    client.create()  # start the loop
    server.respond = slow
    errors: list[BaseException] = []

    def call() -> None:
        try:
            client.create()
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    for _ in range(500):  # wait until the second request reached the server
        if len(server.requests) == 2:
            break
        threading.Event().wait(0.01)
    client.close()
    worker.join(5)
    release.set()
    assert not worker.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], ConfigurationError)
    assert "closed" in str(errors[0])


def test_close_while_many_threads_call_settles_every_call(server: RecordingServer) -> None:
    """Calls queued, in flight or arriving during close() all end: a token or 'closed'."""
    client = Client(API_KEY, base_url=server.base_url)
    client.create()
    outcomes: list[str] = []
    lock = threading.Lock()
    started = threading.Barrier(17)

    def work() -> None:
        started.wait()
        for _ in range(50):
            try:
                client.create()
                result = "token"
            except ConfigurationError as exc:
                result = "closed" if "closed" in str(exc) else repr(exc)
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    started.wait()
    threading.Event().wait(0.05)
    client.close()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads), "a caller hangs"
    assert len(outcomes) == 16 * 50
    assert set(outcomes) == {"token", "closed"}
    assert not _loop_threads()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_another_thread_holds_the_runner_lock(server: RecordingServer) -> None:
    """A parent's thread may be inside the hand-off at fork time; the child must not hang."""
    client = Client(API_KEY, base_url=server.base_url)
    client.create()
    runner = client._runner
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with runner._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)

    def in_child() -> str:
        uses = client.create(uses=3).uses
        client.close()
        return str(uses)

    code, text = _run_in_fork(in_child, meanwhile=release.set)
    holder.join()
    assert (code, text) == (0, "3")
    client.close()


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
def test_ctrl_c_while_waiting_cancels_the_call(server: RecordingServer) -> None:
    """A real SIGALRM -> KeyboardInterrupt in the waiting thread: it raises at once, the
    call's task on the private loop is cancelled (not left to finish), the thread can call
    again, and the late answer reaches nobody."""
    from aiohttp import web

    answered = threading.Event()

    def slow(body: dict[str, object]) -> web.StreamResponse:
        threading.Event().wait(1.5)
        answered.set()
        return web.json_response({"name": "auth_tokens/late", "uses": 77})

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    async def tasks_left() -> int:
        """On the private loop: wait (up to 1 s) until no other task is running."""
        for _ in range(100):
            if len(asyncio.all_tasks()) == 1:
                return 0
            await asyncio.sleep(0.01)
        return len(asyncio.all_tasks()) - 1

    client = Client(API_KEY, base_url=server.base_url)
    try:
        client.create()
        server.respond = slow
        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            with pytest.raises(KeyboardInterrupt):
                client.create(uses=77)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        assert client._runner.submit(tasks_left()).result(5) == 0
        assert not answered.is_set()  # cancelled, not finished: the server still works on it
        server.respond = None
        answered.wait(5)
        for uses in (3, 4):
            assert client.create(uses=uses).uses == uses  # not the interrupted call's 77
    finally:
        client.close()


_EXIT_SCRIPT = """
import os, sys, threading, warnings
warnings.simplefilter("error")
import gemini_tokens

started = threading.Event()
def call():
    started.set()
    {call}
    print("unreachable: the call should still be in flight", flush=True)

{setup}
threading.Thread(target=call, daemon=True).start()
started.wait(10)
while not os.path.getsize(sys.argv[1]):  # until the request reached the server
    threading.Event().wait(0.01)
print("exiting", flush=True)
"""


@pytest.mark.parametrize(
    ("setup", "call"),
    [
        ("client = gemini_tokens.Client({key!r}, base_url={url!r})", "client.create()"),
        (
            "os.environ.update(GEMINI_API_KEY={key!r}, GEMINI_BASE_URL={url!r})",
            "gemini_tokens.create()",
        ),
    ],
    ids=["own-client", "one-shot-helper"],
)
def test_exit_with_a_call_in_flight_in_a_daemon_thread_is_quiet(
    server: RecordingServer, setup: str, call: str, tmp_path: pathlib.Path
) -> None:
    """Issue 11.12a: the library's exit-time close prints no traceback, exits 0."""
    from aiohttp import web

    release = threading.Event()
    marker = tmp_path / "arrived"
    marker.write_text("")

    def slow(body: dict[str, object]) -> web.StreamResponse:
        marker.write_text("yes")
        release.wait(10)
        return web.json_response({"name": "auth_tokens/late"})

    server.respond = slow
    script = _EXIT_SCRIPT.format(setup=setup.format(key=API_KEY, url=server.base_url), call=call)
    try:
        result = subprocess.run(
            [sys.executable, "-c", script, str(marker)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        release.set()
    assert (result.returncode, result.stdout, result.stderr) == (0, "exiting\n", "")
