"""``gemini-tokens serve`` parsed and checked in process (the subprocess runs are in
test_serve.py): ``--check``, ``--dev``'s banner, the exit status of a bad setting, and the
JSON log lines.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from gemini_tokens._cli import main
from gemini_tokens.serve._logging import JsonFormatter

CONFIG = """
[server]
port = 8123

[limits]
per_caller = ["5/minute"]
global = ["60/minute"]

[auth]
authorizer = "tests.test_serve_app:authorize"

[policy]
model = "gemini-live"
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GEMINI_API_KEY", "a-key-for-check")
    path = tmp_path / "broker.toml"
    path.write_text(CONFIG)
    return path


def test_check_prints_what_it_would_run(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--config", str(config), "--check"]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == (
        f"{config}: OK: authorizer tests.test_serve_app:authorize; policies: default; "
        "limits: 1 per caller, 1 global on memory; listens on 127.0.0.1:8123/token"
    )
    assert "a-key-for-check" not in out.out + out.err


def test_port_flag_and_dev_banner(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--config", str(config), "--check", "--dev", "--port", "9001"]) == 0
    out = capsys.readouterr()
    assert "listens on 127.0.0.1:9001/token" in out.out
    assert "DEVELOPMENT MODE" in out.err
    assert "ANY web origin" in out.err


@pytest.mark.parametrize(
    ("port", "message"),
    [
        ("99999", "--port: must be 0 (any free port) to 65535; got 99999"),
        ("-1", "--port: must be 0 (any free port) to 65535; got -1"),
        ("eighty", "--port: must be a whole number; got 'eighty'"),
    ],
)
def test_a_bad_port_flag_is_named_without_a_traceback(
    config: Path, capsys: pytest.CaptureFixture[str], port: str, message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--config", str(config), "--check", "--port", port])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_a_bad_setting_exits_2_with_one_line(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config.write_text(CONFIG.replace('"5/minute"', '"5 a minute"'))
    assert main(["serve", "--config", str(config), "--check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gemini-tokens: error: {config}: limits.per_caller: cannot parse")
    assert len(err.strip().splitlines()) == 1


def test_an_authorizer_that_cannot_be_imported(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config.write_text(CONFIG.replace("tests.test_serve_app:authorize", "nowhere_xyz:f"))
    assert main(["serve", "--config", str(config), "--check"]) == 2
    assert "authorizer: cannot import 'nowhere_xyz'" in capsys.readouterr().err


def test_no_api_key_is_a_configuration_error(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GEMINI_API_KEY")
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    assert main(["serve", "--config", str(config), "--check"]) == 2
    assert "GEMINI_API_KEY" in capsys.readouterr().err


def test_json_log_lines() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord(
        "gemini_tokens.serve", logging.INFO, "f", 1, "hello %s", ("x",), None
    )
    record.url = "http://127.0.0.1:1"
    entry = json.loads(formatter.format(record))
    assert entry["message"] == "hello x"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "gemini_tokens.serve"
    assert entry["url"] == "http://127.0.0.1:1"
    assert entry["time"].endswith("Z")
    # A JSON message (the access and audit lines) is merged, not quoted.
    record = logging.LogRecord("a", logging.INFO, "f", 1, '{"status": 200}', None, None)
    assert json.loads(formatter.format(record))["status"] == 200
    record = logging.LogRecord("a", logging.INFO, "f", 1, "{not json", None, None)
    assert json.loads(formatter.format(record))["message"] == "{not json"
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("a", logging.ERROR, "f", 1, "failed", None, sys.exc_info())
    assert "ValueError: boom" in json.loads(formatter.format(record))["exception"]


def test_an_http_upstream_elsewhere_needs_allow_insecure_http(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config.write_text(CONFIG + '\n[upstream]\nbase_url = "http://emulator.test:8765"\n')
    assert main(["serve", "--config", str(config), "--check"]) == 2
    assert "allow" in capsys.readouterr().err
    config.write_text(
        CONFIG
        + '\n[upstream]\nbase_url = "http://emulator.test:8765"\nallow_insecure_http = true\n'
    )
    assert main(["serve", "--config", str(config), "--check"]) == 0


SECRET = "renewal-secret-" + "r" * 40


def test_check_needs_the_secret_when_renewal_is_on(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GEMINI_TOKENS_BROKER_SECRET", raising=False)
    config.write_text(
        CONFIG.replace('model = "gemini-live"', 'model = "gemini-live"\nmax_session_minutes = 30')
        + '\n[renewal]\nenabled = true\nrate_limits = ["30/hour"]\n'
    )
    assert main(["serve", "--config", str(config), "--check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"gemini-tokens: error: {config}: renewal.enabled: needs the signing secret in "
        "GEMINI_TOKENS_BROKER_SECRET (at least 32"
    )
    monkeypatch.setenv("GEMINI_TOKENS_BROKER_SECRET", SECRET)
    assert main(["serve", "--config", str(config), "--check"]) == 0
    out = capsys.readouterr()
    assert "; renewal: 1 per caller; listens on" in out.out
    assert SECRET not in out.out + out.err


def test_a_mistyped_redis_uri_in_check_never_shows_its_password(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """#6: one slash short, quoted in the error with the password masked."""
    config.write_text(
        CONFIG.replace("[limits]", '[limits]\nstorage = "redis:/:hunter2-pw@redis.internal/0"')
    )
    assert main(["serve", "--config", str(config), "--check"]) == 2
    out = capsys.readouterr()
    assert f"{config}: limits.storage: " in out.err
    assert "hunter2" not in out.out + out.err


def test_dev_without_a_config_file_runs_a_development_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "a-key-for-check")
    monkeypatch.delenv("GEMINI_TOKENS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./broker.toml
    assert main(["serve", "--dev", "--check"]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == (
        "--dev (no config file): OK: authorizer gemini_tokens.serve._build:allow_everyone; "
        "policies: default; limits: 0 per caller, 0 global on memory; "
        "listens on 127.0.0.1:8080/token"
    )
    assert "DEVELOPMENT MODE" in out.err
    assert (
        "No config file: a DEVELOPMENT POLICY for anyone reaching 127.0.0.1:\n"
        "*   model gemini-2.5-flash-native-audio-preview-12-2025, uses=1, 10 minutes." in out.err
    )
    assert main(["serve", "--dev", "--check", "--model", "gemini-live-x"]) == 0
    assert "model gemini-live-x, uses=1, 10 minutes" in capsys.readouterr().err
    # Without --dev a missing file is still an error, and --model needs --dev.
    assert main(["serve", "--check"]) == 2
    assert "broker.toml: file: cannot be read" in capsys.readouterr().err
    assert main(["serve", "--check", "--model", "m"]) == 2
    assert "--model: only with --dev and no config file" in capsys.readouterr().err


def test_the_development_settings() -> None:
    from gemini_tokens.serve._cli import dev_settings

    settings = dev_settings("gemini-live-x", environ={"GEMINI_TOKENS_SERVER_PORT": "9002"})
    assert settings.policy is not None
    policy = settings.policy
    assert (policy.model, policy.uses, policy.expire_minutes) == ("gemini-live-x", 1, 10)
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 9002)
    assert settings.server.allowed_origins == ("*",)
    assert settings.dev is True
    assert settings.renewal.enabled is False
