"""``gemini-tokens demo`` and ``gemini-tokens emulator``, run as the user runs them."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys

import pytest

from gemini_tokens import Client
from gemini_tokens.testing import _demo, _live

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"


def _env() -> dict[str, str]:
    # No key and no endpoint: the demo must need neither.
    return {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "GOOGLE_"))}


def test_demo_tells_the_whole_story() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gemini_tokens", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    out = result.stdout
    steps = [line.split(".")[0] for line in out.splitlines() if re.match(r"^\d\. ", line)]
    assert steps == ["1", "2", "3", "4", "5", "6"]
    assert re.search(r"^1\. .* at http://127\.0\.0\.1:\d+\.$", out, re.M)
    assert f"locked to models/{MODEL} and AUDIO" in out
    assert "uses=1, expires in 30 minutes, new sessions for 1 minute(s)" in out
    # Step 3: accepted, and the token's locks beat the client's TEXT.
    assert "-> accepted (setupComplete)." in out
    assert "modalities=AUDIO, temperature=unset." in out
    # Step 4: the spent token is refused as the service refuses it.
    assert '-> refused: close 1011 "Token has been used too many times"' in out
    # Step 5: the client's override takes effect where the mask allows.
    assert "fieldMask=model)" in out
    assert f"model=models/{MODEL}, modalities=TEXT, temperature=0.9." in out
    # Step 6: expiry.
    assert '-> refused: close 1008 "Auth token has expired."' in out
    assert "UNEXPECTED" not in out
    assert out.rstrip().endswith("Next: `gemini-tokens emulator`.")
    assert "auth_tokens/" not in out.replace("auth_tokens/...", "")  # no token names shown


async def test_demo_reports_a_step_that_misbehaves(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken emulator (locks ignored) makes the demo say so and fail."""
    monkeypatch.setattr(_live, "effective_setup", lambda token, mask, client: dict(client))
    lines: list[str] = []
    status = await _demo._demo(lines.append)
    assert status == 1
    assert any("UNEXPECTED: the locked modality was not AUDIO" in line for line in lines)
    assert lines[-1].startswith("Demo FAILED")


def _start_emulator(*args: str) -> tuple[subprocess.Popen[str], list[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "gemini_tokens", "emulator", *args],
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


def _stop(process: subprocess.Popen[str], sig: int) -> tuple[int, str, str]:
    process.send_signal(sig)
    out, err = process.communicate(timeout=30)
    return process.returncode, out, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_emulator_command_serves_until_stopped(sig: int) -> None:
    process, lines = _start_emulator("--port", "0", "--api-key", "cli-key")
    try:
        text = "\n".join(lines)
        base_url = re.search(r"export GEMINI_BASE_URL=(\S+)", text)
        assert base_url is not None, text
        assert "export GEMINI_API_KEY=cli-key" in text
        assert "BidiGenerateContentConstrained?access_token=<token name>" in text
        with Client("cli-key", base_url=base_url.group(1)) as client:
            token = client.create(live_connect_constraints={"model": MODEL})
        assert token.name.startswith("auth_tokens/")
    finally:
        code, out, err = _stop(process, sig)
    assert code == 0, err
    assert out.strip() == "Emulator stopped."


def test_emulator_command_on_a_busy_port_fails_cleanly() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "gemini_tokens", "emulator", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(),
        )
    assert result.returncode == 1
    assert f"cannot serve on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
