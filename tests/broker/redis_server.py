"""A throwaway redis-server on a free 127.0.0.1 port, for the tests that need one."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

REDIS_SERVER = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
if REDIS_SERVER is None and os.path.exists("/usr/bin/redis-server"):
    REDIS_SERVER = "/usr/bin/redis-server"

needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None,
    reason="needs redis-server: apt-get install redis-server (.ci/run installs it)",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Run redis-server; yield its ``redis://127.0.0.1:PORT/0`` URI."""
    assert REDIS_SERVER is not None
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        process = subprocess.Popen(
            [
                REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", workdir, "--protected-mode", "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while not _ping(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(10)


class Monitor:
    """Counts the commands clients send to a Redis server (``MONITOR``), not those that
    scripts run inside it."""

    def __init__(self, uri: str) -> None:
        import threading

        port = int(uri.rsplit(":", 1)[1].split("/")[0])
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self._sock.sendall(b"MONITOR\r\n")
        assert self._sock.recv(5) == b"+OK\r\n"
        self.lines: list[str] = []
        self._buffer = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            self._buffer += chunk
            *done, self._buffer = self._buffer.split(b"\r\n")
            self.lines.extend(line.decode("utf-8", "replace") for line in done)

    def commands(self, settle: float = 0.3) -> list[str]:
        """The client commands seen so far (first word, upper case)."""
        time.sleep(settle)
        out = []
        for line in self.lines:
            if " lua]" in line or "]" not in line:
                continue
            words = line.split("] ", 1)[1].split(" ", 1)
            out.append(words[0].strip('"').upper())
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()
