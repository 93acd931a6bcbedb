"""``gemini-tokens emulator --tls`` and ``--count-resumption-as-use``, as a user runs them."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

MODEL = "gemini-live-2.5-flash-preview"


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GEMINI_BASE_URL", "SSL_CERT_FILE")
    }
    env.update(extra)
    return env


class Served:
    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gemini_tokens", "emulator", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        assert self.process.stdout is not None
        lines = []
        for line in self.process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Press Ctrl-C"):
                break
        self.text = "\n".join(lines)

    def exported(self, name: str) -> str:
        match = re.search(rf"export {name}=(\S+)", self.text)
        assert match is not None, self.text
        return match.group(1)

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGINT)
        _, err = self.process.communicate(timeout=30)
        return self.process.returncode, err


def _create(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gemini_tokens", "create", "--model", MODEL, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_tls_prints_the_ca_file_and_the_lines_that_trust_it() -> None:
    served = Served("--tls")
    try:
        base_url = served.exported("GEMINI_BASE_URL")
        api_key = served.exported("GEMINI_API_KEY")
        ca_file = served.exported("SSL_CERT_FILE")
        assert base_url.startswith("https://127.0.0.1:")
        assert served.exported("NODE_EXTRA_CA_CERTS") == ca_file
        assert "wss://127.0.0.1:" in served.text
        with open(ca_file) as pem:
            assert pem.read().startswith("-----BEGIN CERTIFICATE-----")
        # The printed lines are enough: the CLI mints over https trusting only that CA.
        env = _env(GEMINI_BASE_URL=base_url, GEMINI_API_KEY=api_key, SSL_CERT_FILE=ca_file)
        minted = _create(env)
        assert minted.returncode == 0, minted.stderr
        assert json.loads(minted.stdout)["name"].startswith("auth_tokens/")
        # Without trusting it, the certificate is refused.
        untrusted = _create(_env(GEMINI_BASE_URL=base_url, GEMINI_API_KEY=api_key))
        assert untrusted.returncode != 0
        assert "certificate" in untrusted.stderr.lower(), untrusted.stderr
        assert "auth_tokens/" not in untrusted.stdout
    finally:
        code, err = served.stop()
    assert code == 0, err
    assert not os.path.exists(ca_file)  # deleted on stop


def _resume_once(base_url: str, api_key: str) -> tuple[int | None, str]:
    """Mint a uses=1 resumable token, open a session, close it, resume it: the close seen."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from gemini_tokens import Client

    with Client(api_key, base_url=base_url) as client:
        token = client.create(
            uses=1, live_connect_constraints={"model": MODEL, "config": {"session_resumption": {}}}
        )
    setup: dict[str, Any] = {"model": MODEL}
    with connect(token.live_url()) as ws:
        ws.send(json.dumps({"setup": setup}))
        assert "setupComplete" in json.loads(ws.recv(timeout=5))
        handle = json.loads(ws.recv(timeout=5))["sessionResumptionUpdate"]["newHandle"]
    with connect(token.live_url()) as ws:
        ws.send(json.dumps({"setup": {**setup, "sessionResumption": {"handle": handle}}}))
        try:
            answer = json.loads(ws.recv(timeout=5))
        except ConnectionClosed as closed:
            received = closed.rcvd
        else:
            assert "setupComplete" in answer
            return None, "accepted"
    assert received is not None
    return received.code, received.reason


@pytest.mark.parametrize("flag", [False, True], ids=["documented", "count-resumption-as-use"])
def test_count_resumption_as_use_flag(flag: bool) -> None:
    served = Served(*(["--count-resumption-as-use"] if flag else []))
    try:
        assert ("counts as a use" in served.text) is flag
        result = _resume_once(served.exported("GEMINI_BASE_URL"), served.exported("GEMINI_API_KEY"))
    finally:
        code, err = served.stop()
    assert code == 0, err
    if flag:
        assert result == (1011, "Token has been used too many times")
    else:
        assert result == (None, "accepted")


def test_tls_without_trustme_fails_cleanly(tmp_path: Any) -> None:
    # A sitecustomize that hides trustme, as in an install without the test extra.
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nsys.modules['trustme'] = None\n", encoding="utf-8"
    )
    env = _env(PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, "-m", "gemini_tokens", "emulator", "--port", "0", "--tls"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 2
    assert "trustme" in result.stderr
    assert "Traceback" not in result.stderr


# --- Ctrl-C always stops it (review #15) ----------------------------------------------------


def _started_through(prelude: str) -> tuple[subprocess.Popen[str], list[str]]:
    """``gemini-tokens emulator`` exec'd by a Python that first ran ``prelude``: what a
    parent leaves to its child (ignored or blocked signals) survives the exec."""
    code = (
        "import os, signal, sys\n"
        + prelude
        + "\nos.execv(sys.executable, [sys.executable, '-m', 'gemini_tokens', 'emulator',"
        " '--port', '0'])\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("Press Ctrl-C"):
            break
    return process, lines


def _interrupted(process: subprocess.Popen[str], sig: int = signal.SIGINT) -> tuple[int, str]:
    process.send_signal(sig)
    try:
        out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError("the emulator did not stop within 30 s of the signal") from None
    return process.returncode, out + err


@pytest.mark.parametrize(
    "prelude",
    [
        # What a non-interactive shell does to `gemini-tokens emulator &`.
        "signal.signal(signal.SIGINT, signal.SIG_IGN)",
        # A parent that spawned it from a thread with the signals blocked.
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})",
    ],
    ids=["sigint-ignored", "signals-blocked"],
)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_stops_it_whatever_its_parent_left_it(prelude: str, sig: int) -> None:
    process, lines = _started_through(prelude)
    assert lines[-1].startswith("Press Ctrl-C"), lines
    code, output = _interrupted(process, sig)
    assert code == 0, output
    assert "Emulator stopped." in output
    assert "Traceback" not in output


@pytest.mark.slow
def test_ctrl_c_right_at_the_ready_line_stops_it_every_time() -> None:
    for _ in range(20):
        served = Served()
        assert served.text.endswith("Press Ctrl-C to stop."), served.text
        code, err = served.stop()  # SIGINT as soon as the line is read
        assert code == 0, err
        assert "Traceback" not in err


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.5])
def test_ctrl_c_at_any_moment_of_start_up_stops_it(delay: float) -> None:
    import time

    process = subprocess.Popen(
        [sys.executable, "-m", "gemini_tokens", "emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    time.sleep(delay)
    code, output = _interrupted(process)
    # Before the command runs (Python still starting or importing) Ctrl-C ends Python itself
    # (1, 130 or killed by SIGINT); from then on the command stops cleanly (0). Never a hang.
    assert code in (0, 1, 130, -signal.SIGINT), output
    if "Press Ctrl-C" in output:
        assert code == 0, output


# -- goAway from the shell: --go-away-after and the loopback-only control routes -------------

DEADLINE = "Deadline expired before operation could complete."


@contextlib.contextmanager
def _open_session(base_url: str, api_key: str) -> Iterator[Any]:
    """A Live session on a fresh token, past its ``setupComplete`` (a websockets socket)."""
    from websockets.sync.client import connect

    from gemini_tokens import Client

    with Client(api_key, base_url=base_url) as client:
        token = client.create(uses=1, live_connect_constraints={"model": MODEL})
    with connect(token.live_url()) as ws:
        ws.send(json.dumps({"setup": {"model": MODEL}}))
        assert "setupComplete" in json.loads(ws.recv(timeout=5))
        yield ws


def _control(base_url: str, method: str, route: str, body: Any = None) -> tuple[int, str]:
    """Call a control route with the standard library, as any language's client would."""
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{base_url}/_emulator/{route}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _closed(ws: Any) -> tuple[int, str]:
    """The close code and reason the emulator sent (the socket must close next)."""
    from websockets.exceptions import ConnectionClosed

    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=5)
    received = info.value.rcvd
    assert received is not None
    return received.code, received.reason


def test_go_away_after_flag_sends_every_session_go_away() -> None:
    served = Served("--go-away-after", "1", "--go-away-time-left", "1")
    try:
        assert "goAway 1 s after setupComplete (--go-away-after), then closes 1 s later" in (
            served.text
        )
        base_url = served.exported("GEMINI_BASE_URL")
        with _open_session(base_url, served.exported("GEMINI_API_KEY")) as ws:
            opened = time.monotonic()
            assert json.loads(ws.recv(timeout=5)) == {"goAway": {"timeLeft": "1s"}}
            told = time.monotonic()
            # Margins for a loaded machine: each instant is read a little after the fact.
            assert told - opened >= 0.5
            assert _closed(ws) == (1011, DEADLINE)
            assert time.monotonic() - told >= 0.5
    finally:
        code, err = served.stop()
    assert code == 0, err


def test_without_the_flag_no_session_is_told_to_go_away() -> None:
    served = Served()
    try:
        assert "--go-away-after" not in served.text
        base_url = served.exported("GEMINI_BASE_URL")
        api_key = served.exported("GEMINI_API_KEY")
        with _open_session(base_url, api_key) as ws, pytest.raises(TimeoutError):
            ws.recv(timeout=1)
    finally:
        code, err = served.stop()
    assert code == 0, err


@pytest.mark.parametrize(
    ("flag", "value", "shown"),
    [
        ("--go-away-after", "-1", "-1"),
        ("--go-away-after", "soon", "'soon'"),
        ("--go-away-after", "nan", "'nan'"),
        ("--go-away-time-left", "-0.5", "-0.5"),
        ("--go-away-time-left", "inf", "'inf'"),
    ],
)
def test_go_away_flags_are_refused_before_anything_starts(
    flag: str, value: str, shown: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gemini_tokens", "emulator", "--port", "0", f"{flag}={value}"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"gemini-tokens emulator: error: {flag}: must be a number of seconds, 0 or more; "
        f"got {shown}"
    )
    assert result.stdout == ""  # nothing was served
    assert "Traceback" not in result.stderr


def test_control_route_sends_go_away_to_open_sessions() -> None:
    served = Served("--go-away-time-left", "0.3")
    try:
        base_url = served.exported("GEMINI_BASE_URL")
        assert f"curl -X POST {base_url}/_emulator/go-away" in served.text
        api_key = served.exported("GEMINI_API_KEY")
        with contextlib.ExitStack() as stack:
            sockets = [stack.enter_context(_open_session(base_url, api_key)) for _ in range(2)]
            status, text = _control(base_url, "GET", "sessions")
            assert (status, json.loads(text)) == (200, {"open": 2, "served": 2})

            status, text = _control(base_url, "POST", "go-away")  # timeLeft: the flag's 0.3 s

            assert (status, json.loads(text)) == (200, {"sessions": 2})
            for ws in sockets:
                assert json.loads(ws.recv(timeout=5)) == {"goAway": {"timeLeft": "0.3s"}}
                assert _closed(ws) == (1011, DEADLINE)
        assert json.loads(_control(base_url, "GET", "sessions")[1]) == {"open": 0, "served": 2}
        # The next session, planned: goAway right after its setupComplete.
        status, text = _control(base_url, "POST", "go-away-next", {"timeLeft": 2, "after": 0})
        assert (status, json.loads(text)) == (200, {"planned": 1})
        with _open_session(base_url, api_key) as ws:
            assert json.loads(ws.recv(timeout=5)) == {"goAway": {"timeLeft": "2s"}}
        status, text = _control(base_url, "POST", "go-away", {"timeLeft": -1})
        assert status == 400
        assert "timeLeft: must be a non-negative number of seconds" in text
    finally:
        code, err = served.stop()
    assert code == 0, err
    assert "auth_tokens" not in err
