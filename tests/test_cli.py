"""The ``gemini-tokens`` command, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .conftest import API_KEY, RecordingServer


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "GOOGLE_"))}
    return subprocess.run(
        [sys.executable, "-m", "gemini_tokens", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base_env, **(env or {})},
    )


def test_help_reads_well() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for word in ("create", "emulator", "demo", "GEMINI_API_KEY"):
        assert word in result.stdout
    create = run_cli("create", "--help")
    assert create.returncode == 0
    for flag in (
        "--uses",
        "--expire-minutes",
        "--model",
        "--modality",
        "--temperature",
        "--config",
        "--lock",
        "--lock-set",
    ):
        assert flag in create.stdout


def test_create_prints_the_token_json(server: RecordingServer) -> None:
    result = run_cli(
        "create",
        "--uses",
        "1",
        "--expire-minutes",
        "30",
        "--model",
        "gemini-x",
        "--modality",
        "audio",
        "--temperature",
        "0.7",
        "--config",
        '{"session_resumption": {}}',
        "--lock",
        "top_p",
        env={"GEMINI_API_KEY": API_KEY, "GEMINI_BASE_URL": server.base_url},
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["name"].startswith("auth_tokens/")
    assert data["uses"] == 1
    sent = server.last_body
    assert sent["bidiGenerateContentSetup"] == {
        "model": "models/gemini-x",
        "generationConfig": {"responseModalities": ["AUDIO"], "temperature": 0.7},
        "sessionResumption": {},
    }
    assert set(sent["fieldMask"].split(",")) == {
        "model",
        "generationConfig.responseModalities",
        "generationConfig.temperature",
        "sessionResumption",
        "generationConfig.topP",
    }
    assert data["bidiGenerateContentSetup"] == sent["bidiGenerateContentSetup"]
    assert API_KEY not in result.stdout + result.stderr


def test_validation_error_is_one_line_on_stderr(server: RecordingServer) -> None:
    result = run_cli(
        "create",
        "--uses",
        "-2",
        env={"GEMINI_API_KEY": API_KEY, "GEMINI_BASE_URL": server.base_url},
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert "uses" in result.stderr
    assert "Traceback" not in result.stderr
    assert server.requests == []


def test_bad_config_json(server: RecordingServer) -> None:
    result = run_cli(
        "create",
        "--config",
        "{nope",
        env={"GEMINI_API_KEY": API_KEY, "GEMINI_BASE_URL": server.base_url},
    )
    assert result.returncode == 2
    assert "--config" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_key() -> None:
    result = run_cli("create")
    assert result.returncode == 2
    assert "GEMINI_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_service_error_exit_status(server: RecordingServer) -> None:
    result = run_cli(
        "create",
        "--max-retries",
        "0",
        env={"GEMINI_API_KEY": API_KEY, "GEMINI_BASE_URL": server.base_url + "/nope"},
    )
    assert result.returncode == 1
    assert "NotFoundError" in result.stderr
    assert "Traceback" not in result.stderr
    assert API_KEY not in result.stderr


def test_no_command_prints_help() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert "create" in result.stdout


def test_main_in_process(server: RecordingServer, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The same entry point, in-process (counts toward coverage)."""
    from gemini_tokens._cli import main

    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    monkeypatch.setenv("GEMINI_BASE_URL", server.base_url)
    assert (
        main(
            [
                "create",
                "--voice",
                "Kore",
                "--system-instruction",
                "Be brief.",
                "--lock-set",
                "--timeout",
                "5",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["bidiGenerateContentSetup"]["systemInstruction"] == {
        "parts": [{"text": "Be brief."}],
        "role": "user",
    }
    assert main(["create", "--config", "[1]"]) == 2
    assert "JSON object" in capsys.readouterr().err
