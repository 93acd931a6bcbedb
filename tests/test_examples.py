"""Every recipe in examples/ runs against the emulator: in-process and as real servers/workers."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gemini_tokens.testing import Emulator

from .spawn import CELERY_WORKER, ROOT, env_for, free_port, run_python, start, stop, wait_http

AUTH = {"Authorization": "Bearer demo-user-token"}


def _post(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, method="POST", headers=headers or {}, data=b"")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


# --- aiohttp ------------------------------------------------------------------------------


async def test_aiohttp_app(gemini_emulator: Emulator) -> None:
    from examples import aiohttp_app

    app = aiohttp_app.make_app()
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        assert (await http.post("/token")).status == 401
        assert (await http.post("/token", headers={"Authorization": "Bearer nope"})).status == 401

        response = await http.post("/token", headers=AUTH)
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        data = await response.json()
        assert data["name"].startswith("auth_tokens/")
        assert data["uses"] == 1
        assert gemini_emulator.api_key not in json.dumps(data)
        assert gemini_emulator.token(data["name"]) is not None

        # The token opens a Live session through the emulator.
        session_http = http.session
        async with session_http.ws_connect(data["liveUrl"]) as ws:
            await ws.send_json({"setup": {"model": data["bidiGenerateContentSetup"]["model"]}})
            first = await ws.receive(timeout=10)  # binary frames, as the service sends
            assert "setupComplete" in json.loads(first.data)

        # The service's back-off is passed on as a 503, not slept; its refusal is our 500.
        gemini_emulator.fail_next(status=429, retry_after=30)
        limited = await http.post("/token", headers=AUTH)
        assert limited.status == 503
        assert limited.headers["Retry-After"] == "30"
        gemini_emulator.fail_next(status=403)
        refused = await http.post("/token", headers=AUTH)
        assert refused.status == 500
        assert (await refused.json())["error"]["status"] == "INTERNAL"
        # 10 a minute per user: the 3 valid requests above counted, 7 more pass, then 429.
        statuses = [(await http.post("/token", headers=AUTH)).status for _ in range(8)]
        assert statuses == [200] * 7 + [429]


async def test_aiohttp_index_serves_the_browser_page(gemini_emulator: Emulator) -> None:
    from examples import aiohttp_app

    async with TestClient(TestServer(aiohttp_app.make_app(), host="127.0.0.1")) as http:
        page = await http.get("/")
        assert page.status == 200
        assert "app.js" in await page.text()
        script = await http.get("/static/app.js")
        assert script.status == 200


# --- FastAPI ------------------------------------------------------------------------------


# Older starlette releases (those for Python 3.10) warn when their test client runs on httpx.
@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")
def test_fastapi_app(gemini_emulator_sync: Emulator) -> None:
    from fastapi.testclient import TestClient as FastAPITestClient

    from examples import fastapi_app

    app = fastapi_app.create_app()  # its broker reads this test's environment
    with FastAPITestClient(app, base_url="http://127.0.0.1") as http:
        assert http.post("/token").status_code == 401
        ok = http.post("/token", headers=AUTH, json={"config": {"speech_config": "Puck"}})
        assert ok.status_code == 200
        data = ok.json()
        assert data["name"].startswith("auth_tokens/")
        assert data["liveUrl"].startswith("ws://127.0.0.1:")
        generation = data["bidiGenerateContentSetup"]["generationConfig"]
        assert generation["responseModalities"] == ["AUDIO"]
        voice = generation["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"]
        assert voice == "Puck"
        refused = http.post("/token", headers=AUTH, json={"config": {"speech_config": "Zed"}})
        assert refused.status_code == 400
        assert "config.speech_config" in refused.json()["error"]["message"]

        gemini_emulator_sync.fail_next(status=429, retry_after=45)
        limited = http.post("/token", headers=AUTH)
        assert limited.status_code == 503
        assert limited.headers["Retry-After"] == "45"

        gemini_emulator_sync.fail_next(status=503, times=3)
        unavailable = http.post("/token", headers=AUTH)
        assert unavailable.status_code == 503  # after the client's own retries
        assert int(unavailable.headers["Retry-After"]) >= 1
        assert "/token" in http.get("/openapi.json").json()["paths"]
    assert len(gemini_emulator_sync.tokens) == 1


def test_fastapi_app_runs_from_another_directory(tmp_path: pathlib.Path) -> None:
    """``python path/to/fastapi_app.py`` works outside the repository (the emulator too)."""
    with Emulator.running() as emu:
        port = free_port()
        env = env_for(emu)
        env.pop("PYTHONPATH")  # the installed package only, not the checkout's examples/
        server = start(
            [sys.executable, str(ROOT / "examples" / "fastapi_app.py"), "--port", str(port)],
            env,
            cwd=tmp_path,
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/docs", server)
            status, headers, body = _post(f"http://127.0.0.1:{port}/token", AUTH)
        finally:
            output = stop(server, timeout=30)
        assert status == 200, output
        assert {k.lower(): v for k, v in headers.items()}["cache-control"] == "no-store"
        assert body["liveUrl"].startswith(emu.base_url.replace("http", "ws"))
        assert len(emu.tokens) == 1
        assert "Traceback" not in output


# --- Flask (WSGI) and gunicorn --preload ------------------------------------------------


def test_flask_app_in_process(gemini_emulator_sync: Emulator) -> None:
    import importlib

    from examples import flask_app

    flask_app = importlib.reload(flask_app)  # its module-level broker reads the environment
    try:
        http = flask_app.app.test_client()
        assert http.get("/").status_code == 200  # the rest of the app is Flask's
        assert http.post("/token").status_code == 401
        ok = http.post("/token", headers=AUTH)
        assert ok.status_code == 200
        assert ok.headers["Cache-Control"] == "no-store"
        assert ok.get_json()["name"].startswith("auth_tokens/")
        gemini_emulator_sync.fail_next(status=429, retry_after=60)
        limited = http.post("/token", headers=AUTH)
        assert limited.status_code == 503
        assert limited.headers["Retry-After"] == "60"
        assert http.post("/token", headers=AUTH, json={"config": {"x": 1}}).status_code == 400
    finally:
        flask_app.token_app.close()


@pytest.mark.slow
def test_flask_app_under_gunicorn_preload() -> None:
    """Real prefork: the broker is built in the master, used in two forked workers."""
    pytest.importorskip("gunicorn", reason="needs gunicorn: pip install -e '.[test]'")
    with Emulator.running() as emu:
        port = free_port()
        server = start(
            [
                sys.executable, "-m", "gunicorn", "--preload", "-w", "2",
                "-b", f"127.0.0.1:{port}", "examples.flask_app:app",
            ],
            env_for(emu),
        )  # fmt: skip
        try:
            wait_http(f"http://127.0.0.1:{port}/", server)
            results = [_post(f"http://127.0.0.1:{port}/token", AUTH) for _ in range(8)]
        finally:
            output = stop(server, timeout=30)
        assert [status for status, _, _ in results] == [200] * 8, output
        names = {body["name"] for _, _, body in results}
        assert len(names) == 8
        assert len(emu.tokens) == 8
        assert "Traceback" not in output
        assert "Unclosed" not in output


# --- Django (WSGI) --------------------------------------------------------------------


def test_django_app(gemini_emulator_sync: Emulator) -> None:
    import importlib

    from werkzeug.test import Client as WSGIClient

    from examples import django_app

    django_app = importlib.reload(django_app)  # its broker reads this test's environment
    http = WSGIClient(django_app.application)
    try:
        assert http.get("/").status_code == 200  # Django's own view
        anonymous = http.post("/token")
        assert anonymous.status_code == 401
        assert anonymous.get_json()["error"]["status"] == "UNAUTHENTICATED"
        login = http.get("/demo-login")  # Django's session middleware sets the cookie
        assert login.status_code == 200
        ok = http.post("/token")
        assert ok.status_code == 200, ok.data
        assert ok.headers["Cache-Control"] == "no-store"
        data = ok.get_json()
        assert gemini_emulator_sync.token(data["name"]) is not None
        assert data["uses"] == 1
        forged = WSGIClient(django_app.application)
        forged.set_cookie("sessionid", "forged-value", domain="localhost")
        assert forged.post("/token").status_code == 401
        assert http.get("/token").status_code == 405
    finally:
        django_app.token_app.close()


# --- Celery prefork ---------------------------------------------------------------------


@pytest.mark.slow
def test_celery_task_under_prefork(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("celery", reason="needs celery: pip install -e '.[test]'")
    with Emulator.running() as emu:
        env = env_for(emu, TOKEN_QUEUE_DIR=str(tmp_path))
        worker = start([*CELERY_WORKER, "-c", "2"], env)
        script = (
            "import json\n"
            "from examples.celery_app import mint_token\n"
            "results = [mint_token.delay(f'user{i}', uses=2) for i in range(8)]\n"
            "print(json.dumps([r.get(timeout=60) for r in results]))\n"
        )
        try:
            client = run_python(script, env)
        finally:
            output = stop(worker)
        assert client.returncode == 0, client.stderr + output
        minted = json.loads(client.stdout)
        assert [m["user"] for m in minted] == [f"user{i}" for i in range(8)]
        assert all(m["name"].startswith("auth_tokens/") for m in minted)
        assert all(m["uses"] == 2 for m in minted)
        assert worker.pid not in {m["pid"] for m in minted}  # minted in forked children
        assert len(emu.tokens) == 8
        assert "Traceback" not in output


# --- a plain script ---------------------------------------------------------------------


def test_plain_script(gemini_emulator_sync: Emulator) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "plain_script.py")],
        env=env_for(gemini_emulator_sync),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["user"] == "alice"
    assert data["name"].startswith("auth_tokens/")
    assert gemini_emulator_sync.api_key not in result.stdout


@pytest.fixture(autouse=True)
def _no_stray_children() -> Iterator[None]:
    yield
    # Every subprocess above is waited for; a zombie would mean a leak.
    try:
        pid, _ = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        pid = 0
    assert pid == 0


@pytest.mark.slow
def test_django_app_under_gunicorn() -> None:
    """The Django recipe under a real WSGI server: sign in, then mint with the cookie."""
    import http.cookiejar
    import urllib.request

    pytest.importorskip("gunicorn", reason="needs gunicorn: pip install -e '.[test]'")
    with Emulator.running() as emu:
        port = free_port()
        server = start(
            [
                sys.executable, "-m", "gunicorn", "-w", "2",
                "-b", f"127.0.0.1:{port}", "examples.django_app:application",
            ],
            env_for(emu),
        )  # fmt: skip
        try:
            wait_http(f"http://127.0.0.1:{port}/", server)
            anonymous = _post(f"http://127.0.0.1:{port}/token")
            jar = http.cookiejar.CookieJar()
            opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
            with opener.open(f"http://127.0.0.1:{port}/demo-login", timeout=30) as login:
                assert login.status == 200
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/token", method="POST", data=b""
            )
            with opener.open(request, timeout=30) as response:
                status, body = response.status, json.loads(response.read())
        finally:
            output = stop(server, timeout=30)
        assert anonymous[0] == 401, output
        assert status == 200, output
        assert emu.token(body["name"]) is not None
        assert "Traceback" not in output


# --- the docs show these files as they are ------------------------------------------------


@pytest.mark.parametrize(
    ("page", "path", "lang"),
    [
        ("recipes.md", "examples/aiohttp_app.py", "python"),
        ("recipes.md", "examples/fastapi_app.py", "python"),
        ("recipes.md", "examples/flask_app.py", "python"),
        ("recipes.md", "examples/django_app.py", "python"),
        ("browser.md", "examples/browser/app.js", "javascript"),
        ("browser.md", "examples/browser/index.html", "html"),
    ],
)
def test_the_docs_show_each_tested_file_whole(page: str, path: str, lang: str) -> None:
    text = (ROOT / "docs" / page).read_text()
    assert f"```{lang}\n{(ROOT / path).read_text()}```\n" in text, f"{page} is not {path}"
