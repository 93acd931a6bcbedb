"""The ``gemini-tokens`` command, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

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


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run the command in-process: (exit status, stderr), whether argparse exits or not."""
    from gemini_tokens._cli import main

    try:
        status = main(argv)
    except SystemExit as exc:
        status = int(exc.code or 0)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    return status, captured.err


# Each message names the flag (or the variable) and the rule, in the command line's terms.
MESSAGES = [
    (["create", "--expire-minutes", "0"], "--expire-minutes: must be positive; got 0"),
    (
        ["create", "--new-session-expire-minutes", "-1"],
        "--new-session-expire-minutes: must be positive; got -1",
    ),
    (["create", "--expire-minutes", "nan"], "--expire-minutes: must be a number of minutes"),
    (["create", "--uses", "-2"], "--uses: must be 0 (no limit) or more; got -2"),
    (["create", "--uses", "one"], "--uses: must be a whole number; got 'one'"),
    (["create", "--timeout", "nan"], "--timeout: must be a positive number of seconds"),
    (["create", "--timeout", "0"], "--timeout: must be a positive number of seconds; got 0"),
    (["create", "--timeout", "-3"], "--timeout: must be a positive number of seconds; got -3"),
    (["create", "--timeout", "inf"], "--timeout: must be a positive number of seconds"),
    (["create", "--max-retries", "-1"], "--max-retries: must be 0 (no retries) or more; got -1"),
    (["create", "--temperature", "warm"], "--temperature: must be a number; got 'warm'"),
    (["create", "--modality", "video"], "--modality: invalid choice: 'video'"),
    (["create", "--usess", "1"], "--usess: no such flag; did you mean --uses?"),
    (["create", "--lock_set"], "--lock_set: no such flag; did you mean --lock-set?"),
    (["create", "--use", "1"], "--use: no such flag; did you mean --uses?"),  # no abbreviations
    (["creat"], "invalid choice: 'creat'"),
    (["emulator", "--port", "99999"], "--port: must be 0 (any free port) to 65535; got 99999"),
    (["emulator", "--prot", "1"], "--prot: no such flag; did you mean --port?"),
    (["create", "--config", "{nope"], "--config: is not valid JSON"),
    (
        ["create", "--config", '{"temprature": 1}'],
        "--config: temprature: is not a field of LiveConnectConfig; did you mean 'temperature'?",
    ),
    (["create", "--config", '{"temperature": "hot"}'], "--config: temperature: "),
    (["create", "--model", "m", "--lock", "top_pp"], "--lock: 'top_pp' is not a lockable"),
    (
        ["create", "--base-url", "http://example.com"],
        "--base-url: plain http:// to a host that is not loopback would send the API key in "
        "clear; use https:// or add --allow-insecure-http",
    ),
    (["create", "--base-url", "ftp://example.com"], "--base-url: must be an http(s) URL"),
]


@pytest.mark.parametrize(("argv", "message"), MESSAGES, ids=[" ".join(a) for a, _ in MESSAGES])
def test_error_messages_name_the_flag(
    argv: list[str],
    message: str,
    server: RecordingServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    monkeypatch.setenv("GEMINI_BASE_URL", server.base_url)
    status, err = _main(argv, capsys)
    assert status == 2
    assert message in err
    assert err.count("error:") == 1
    for python in ("_minutes", "expire_minutes", "api_key=", "allow_insecure_http", "None"):
        assert python not in err
    assert server.requests == []  # refused before anything was sent


def test_a_bad_base_url_in_the_environment_is_named(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    monkeypatch.setenv("GEMINI_BASE_URL", "http://10.1.2.3:8765")
    status, err = _main(["create"], capsys)
    assert status == 2
    assert "GEMINI_BASE_URL: plain http://" in err
    assert "add --allow-insecure-http" in err


def test_allow_insecure_http(
    server: RecordingServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flag lifts the refusal and reaches the client (which then talks to 127.0.0.1)."""
    from gemini_tokens import _sync
    from gemini_tokens._cli import main

    made: list[dict[str, Any]] = []
    real = _sync.Client

    def client(**options: Any) -> _sync.Client:
        made.append(options)
        return real(**{**options, "base_url": server.base_url})

    monkeypatch.setattr(_sync, "Client", client)
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    argv = ["create", "--base-url", "http://tokens.internal:8080"]
    assert main(argv) == 2
    assert "add --allow-insecure-http" in capsys.readouterr().err
    assert made == []
    assert main([*argv, "--allow-insecure-http"]) == 0
    assert made[0]["allow_insecure_http"] is True
    assert made[0]["base_url"] == "http://tokens.internal:8080"
    assert json.loads(capsys.readouterr().out)["name"].startswith("auth_tokens/")


@pytest.mark.parametrize(
    ("port", "message"),
    [
        ("99999", "--port: must be 0 (any free port) to 65535; got 99999"),
        ("-1", "--port: must be 0 (any free port) to 65535; got -1"),
        ("eighty", "--port: must be a whole number; got 'eighty'"),
    ],
)
def test_every_port_flag_refuses_a_bad_port_in_the_same_words(
    port: str, message: str, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    """``emulator`` and ``serve`` share one ``--port`` type."""
    said = []
    for argv in (
        ["emulator", "--port", port],
        ["serve", "--config", str(tmp_path / "broker.toml"), "--check", "--port", port],
    ):
        status, err = _main(argv, capsys)
        assert status == 2
        last = err.strip().splitlines()[-1]
        assert last == f"gemini-tokens {argv[0]}: error: {message}"
        said.append(last.split(": error: ", 1)[1])
    assert said[0] == said[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["emulator", "--port", "99999"], "--port: must be 0 (any free port) to 65535"),
        (["create", "--usess", "1"], "--usess: no such flag; did you mean --uses?"),
    ],
)
def test_as_a_real_process(argv: list[str], message: str) -> None:
    result = run_cli(*argv, env={"GEMINI_API_KEY": API_KEY})
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
