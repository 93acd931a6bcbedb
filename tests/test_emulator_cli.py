"""``gemini-tokens emulator --tls`` and ``--count-resumption-as-use``, as a user runs them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
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
