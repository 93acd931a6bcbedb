"""Child processes for the tests that run real servers and workers (gunicorn, celery, the
examples): a free port, the environment that points them at an emulator, start, wait, stop."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from gemini_tokens.testing import Emulator

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: ``celery worker`` for examples/celery_app.py, prefork, without the chatter of a cluster.
CELERY_WORKER = (
    sys.executable, "-m", "celery", "-A", "examples.celery_app", "worker", "-P", "prefork",
    "-l", "warning", "--without-heartbeat", "--without-mingle", "--without-gossip",
)  # fmt: skip


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def env_for(emu: Emulator, **extra: str) -> dict[str, str]:
    """This environment without GEMINI_*/GOOGLE_*, pointed at ``emu``; the checkout and the
    venv's scripts first on the paths."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "GOOGLE_"))}
    env.update(GEMINI_API_KEY=emu.api_key, GEMINI_BASE_URL=emu.base_url, **extra)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PATH"] = f"{pathlib.Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def start(
    args: list[str] | tuple[str, ...], env: dict[str, str], cwd: pathlib.Path = ROOT
) -> subprocess.Popen[str]:
    """Start ``args`` with both output streams captured together (read them with `stop`)."""
    return subprocess.Popen(
        list(args),
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop(process: subprocess.Popen[str], timeout: float = 60) -> str:
    """SIGTERM, wait for the exit; what the process wrote."""
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=timeout)
    return output


def wait_http(url: str, process: subprocess.Popen[str], timeout: float = 60) -> None:
    """Wait until ``url`` answers (any status); fail at once, with its output, if
    ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited: {process.communicate()[0]}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(url)


def run_python(
    script: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -c script`` in the checkout, its output captured."""
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
