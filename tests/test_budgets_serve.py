"""Budgets and cut-offs in ``gemini-tokens serve``: two processes on one Redis share one
budget and one suspension, set from the command line; ``GET /token/usage``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.jwks_server import (  # noqa: F401  (fixtures)
    IdentityProvider,
    JWKSServer,
    idp_fixture,
    jwks_fixture,
)
from tests.spawn import free_port
from tests.test_serve import (  # noqa: F401  (fixtures)
    config,
    emulator,
    post,
    redis_url,
    start,
)

pytestmark = pytest.mark.slow


def with_budget(jwks_url: str, storage: str, budget: str = '["45/day"]') -> str:
    toml = config(jwks_url, storage=storage)
    # The budget goes into the [limits] table the helper writes.
    return toml.replace("[limits]\n", f"[limits]\nlive_minutes = {budget}\n", 1)


def operator(config_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEMINI_")}
    return subprocess.run(
        [sys.executable, "-m", "gemini_tokens", "serve", *args, "--config", str(config_file)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,  # no API key: an operator command mints nothing
        check=False,
    )


async def get_usage(http: Any, base: str, jwt: str) -> tuple[int, Any]:
    async with http.get(base + "/token/usage", headers={"Authorization": f"Bearer {jwt}"}) as r:
        return r.status, await r.json()


async def test_two_serve_processes_share_one_budget_and_one_suspension(
    start: Any,  # noqa: F811  (the fixtures imported above)
    jwks: JWKSServer,
    idp: IdentityProvider,
    http: Any,
    redis_url: str,  # noqa: F811
) -> None:
    toml = with_budget(jwks.url, redis_url)
    first, second = start(toml), start(toml)
    for serve in (first, second):  # each fetches the JWKS once before the rush
        assert (await get_usage(http, serve.base, idp.token("warm")))[0] == 200
    jwt = idp.token("carol")
    # 20 at once, spread over both processes, with room for 3 tokens of 15 minutes.
    results = await asyncio.gather(
        *(post(http, (first, second)[i % 2].url, jwt) for i in range(20))
    )
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200] * 3 + [429] * 17
    refused = next(body for status, _, body in results if status == 429)
    assert refused["error"]["message"].startswith("no Live minutes left today")
    status, usage = await get_usage(http, second.base, jwt)
    assert status == 200
    assert usage["remainingMinutes"] == 0
    assert usage["suspended"] is None
    # The operator suspends dave from the command line: both processes refuse his next one.
    dave = idp.token("dave")
    assert (await post(http, first.url, dave))[0] == 200
    done = operator(first.config, "suspend", "dave", "--for", "1h", "--reason", "chargeback")
    assert done.returncode == 0, done.stderr
    assert "dave: suspended until" in done.stdout
    for serve in (first, second):
        status, _, body = await post(http, serve.url, dave)
        assert status == 403
        assert body["error"]["message"] == "you may not start Live sessions: chargeback"
    shown = operator(first.config, "usage", "dave")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["caller"] == "dave"
    assert report["remainingMinutes"] == 30
    assert report["suspended"]["reason"] == "chargeback"
    assert (await get_usage(http, first.base, dave))[1]["suspended"]["reason"] == "chargeback"
    back = operator(second.config, "reinstate", "dave")
    assert back.returncode == 0, back.stderr
    assert "dave: reinstated" in back.stdout
    assert (await post(http, second.url, dave))[0] == 200


def test_operator_commands_refuse_memory_storage_and_bad_durations(
    tmp_path: Path, jwks: JWKSServer
) -> None:
    config_file = tmp_path / "broker.toml"
    config_file.write_text(with_budget(jwks.url, "memory://"))
    done = operator(config_file, "suspend", "dave")
    assert done.returncode == 2
    assert "memory://" in done.stderr
    assert "redis://" in done.stderr
    bad = operator(config_file, "suspend", "dave", "--for", "-1h")
    assert bad.returncode == 2
    assert "--for" in bad.stderr
    config_file.write_text(with_budget(jwks.url, "memory://", '["lots"]'))
    broken = operator(config_file, "usage", "dave")
    assert broken.returncode == 2
    assert "limits.live_minutes" in broken.stderr


def test_an_operator_command_says_when_the_storage_is_out_of_reach(
    tmp_path: Path, jwks: JWKSServer
) -> None:
    config_file = tmp_path / "broker.toml"
    uri = f"redis://:s3cret-pass@127.0.0.1:{free_port()}/0"
    config_file.write_text(with_budget(jwks.url, uri))
    done = operator(config_file, "suspend", "dave", "--reason", "x")
    assert done.returncode == 1
    assert "the storage could not be reached (" in done.stderr
    assert "s3cret-pass" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
