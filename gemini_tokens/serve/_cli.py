"""The ``gemini-tokens serve`` subcommand: its options, and what it runs.

``gemini-tokens serve --config broker.toml`` runs the broker as a service;
``--check`` validates the settings (file and environment) and exits; ``--dev`` listens on
loopback only, lets any origin in, and says so loudly (with no config file, it runs a
development policy: ``--model``, ``uses=1``, 10 minutes, anyone on this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gemini_tokens.serve._settings import ServeSettings

__all__ = ["DEV_MODEL", "add_serve_command", "dev_settings", "run_serve"]

#: The model of ``--dev`` without a config file when ``--model`` is not given.
DEV_MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
#: Where ``--dev``'s development settings say they came from (errors name it).
DEV_SOURCE = "--dev (no config file)"

_DESCRIPTION = """\
Run the token broker as a service: it verifies your users' JWTs (or calls your
module:function authorizer), applies the policy, the rate limits and the allowed origins,
mints with the API key from GEMINI_API_KEY, and audits every decision.

Endpoints: POST <path> (tokens; default /token), GET /healthz (alive), GET /readyz
(limiter storage and token service reachable, JWT keys at hand), GET /metrics
(Prometheus, when [server] metrics = true). SIGTERM stops it gracefully: new connections
are refused, requests in flight get shutdown_timeout seconds to finish, then any still
waiting is answered 503 with Retry-After; it exits within about a second more.

With [renewal] enabled = true, conversations are renewed ({"renew": session}); the
secret that signs sessions comes only from GEMINI_TOKENS_BROKER_SECRET.

Settings come from the TOML file, overridden by GEMINI_TOKENS_<SECTION>_<KEY> variables
(e.g. GEMINI_TOKENS_SERVER_PORT=9000, GEMINI_TOKENS_LIMITS_STORAGE=redis://...,
GEMINI_TOKENS_JWT_HMAC_SECRET=...). OpenTelemetry: set OTEL_EXPORTER_OTLP_ENDPOINT to export
traces and metrics over OTLP/HTTP.
"""

_DEV_WARNING = """\
**********************************************************************
* gemini-tokens serve --dev: DEVELOPMENT MODE                        *
*   listening on 127.0.0.1 only, and ANY web origin may get tokens.  *
*   Never run --dev in production.                                   *
**********************************************************************"""

_DEV_POLICY = """* No config file: a DEVELOPMENT POLICY for anyone reaching 127.0.0.1:
*   model {model}, uses=1, 10 minutes.
*   Write a broker.toml (docs/serve.md) for anything else."""


def add_serve_command(commands: Any, *, port: Callable[[str], int]) -> None:
    """Add ``serve`` to the ``gemini-tokens`` subcommands.

    Args:
        commands: The argparse subparsers object of ``gemini-tokens``.
        port: The ``--port`` flags' type, the command line's own, so that ``serve`` and
            ``emulator`` refuse a bad port in the same words.
    """
    serve = commands.add_parser(
        "serve",
        help="run the token broker as a service (JWT auth, limits, audit, metrics)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="the settings file (default: $GEMINI_TOKENS_CONFIG or ./broker.toml; with --dev "
        "and neither, a development policy)",
    )
    serve.add_argument(
        "--check",
        action="store_true",
        help="validate the settings (file and environment) and exit: 0 if valid, 2 if not",
    )
    serve.add_argument(
        "--dev",
        action="store_true",
        help="development mode: loopback only, any origin allowed (loudly announced)",
    )
    # Checked by the flag's type, so that an error names the flag, not the setting.
    serve.add_argument("--port", type=port, metavar="N", help="override [server] port")
    serve.add_argument(
        "--model",
        metavar="MODEL",
        help=f"--dev without a config file: the model tokens are for (default: {DEV_MODEL})",
    )
    serve.set_defaults(handler=run_serve)
    _add_operator_commands(serve)


# -- operator commands: budgets and cut-offs on the shared storage --------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """``--for``: ``90``, ``45s``, ``30m``, ``1h`` or ``2d``, above 0."""
    match = _DURATION.fullmatch(text.strip())
    seconds = float(match[1]) * _UNIT_SECONDS[match[2]] if match else 0.0
    if seconds <= 0:
        raise argparse.ArgumentTypeError(
            f"--for: {text!r} is not a duration above 0 such as 90s, 30m, 1h or 2d"
        )
    return seconds


def _add_operator_commands(serve: Any) -> None:
    """``serve usage CALLER``, ``serve suspend CALLER [--for 1h] [--reason ...]`` and
    ``serve reinstate CALLER``: on the configured (shared) storage, so every replica at once."""
    actions = serve.add_subparsers(dest="serve_action", metavar="{usage,suspend,reinstate}")

    def action(name: str, help_text: str) -> Any:
        parser = actions.add_parser(name, help=help_text, description=help_text)
        parser.add_argument("caller", metavar="CALLER", help="the caller id (e.g. a JWT sub)")
        # Also after the action (`serve suspend alice --config f`); the serve flag otherwise.
        parser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS)
        return parser

    action("usage", "print a caller's remaining Live minutes per budget, and any suspension")
    suspend = action(
        "suspend",
        "refuse a caller's next token and renewal on every replica (tokens already handed "
        "out run to their expireTime)",
    )
    suspend.add_argument(
        "--for",
        dest="duration",
        type=_duration,
        metavar="DURATION",
        help="e.g. 1h (default: until reinstate)",
    )
    suspend.add_argument(
        "--reason", default="your access was suspended", help="the text shown to the page"
    )
    action("reinstate", "end a caller's suspension on every replica")


async def _operate(broker: Any, args: argparse.Namespace) -> str:
    try:
        if args.serve_action == "suspend":
            suspension = await broker.suspend(args.caller, args.duration, args.reason)
            until = suspension.to_dict()["until"] or "reinstated"
            return f"{args.caller}: suspended until {until}: {suspension.reason}"
        if args.serve_action == "reinstate":
            was = await broker.reinstate(args.caller)
            return f"{args.caller}: {'reinstated' if was else 'was not suspended'}"
        usage = await broker.usage(args.caller)
        return json.dumps({"caller": args.caller, **usage.to_dict()}, indent=2)
    finally:
        await broker.aclose()


def run_operator_command(args: argparse.Namespace, environ: dict[str, str]) -> int:
    """``serve usage|suspend|reinstate CALLER`` against the configured storage.

    Raises:
        ConfigurationError: bad settings, or a ``memory://`` storage (this process's own).
    """
    from gemini_tokens import AsyncClient, ConfigurationError
    from gemini_tokens.serve._build import build_broker
    from gemini_tokens.serve._settings import load_settings

    settings = load_settings(args.config, environ=environ)
    if settings.limits.storage.split("://", 1)[0].lower().endswith("memory"):
        raise ConfigurationError(
            f"serve {args.serve_action}: [limits] storage is memory://, which lives in each "
            "serve process; use redis://... so that an operator acts on every replica"
        )
    # The command never mints: no API key needed, so a placeholder one.
    client = AsyncClient(api_key="serve-operator-command-mints-nothing")
    broker, close_audit = build_broker(settings, client=client)
    close_audit()
    try:
        print(asyncio.run(_operate(broker, args)))
    except ValueError as exc:
        print(f"gemini-tokens serve {args.serve_action}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the storage out of reach: its type only (no URI, no password)
        print(
            f"gemini-tokens serve {args.serve_action}: the storage could not be reached "
            f"({type(exc).__name__})",
            file=sys.stderr,
        )
        return 1
    finally:
        asyncio.run(client.close())
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """Run (or ``--check``) the service; returns the exit status.

    A bad setting raises `SettingsError` (a ConfigurationError: the CLI prints it on one
    line and exits 2) before anything listens.
    """
    from gemini_tokens import ConfigurationError
    from gemini_tokens.serve._settings import load_settings

    environ = dict(os.environ)
    if getattr(args, "serve_action", None):
        return run_operator_command(args, environ)
    if args.port is not None:
        environ["GEMINI_TOKENS_SERVER_PORT"] = str(args.port)
    config = args.config or environ.get("GEMINI_TOKENS_CONFIG")
    development = args.dev and config is None and not os.path.exists("broker.toml")
    if args.model is not None and not development:
        raise ConfigurationError(
            "--model: only with --dev and no config file (a broker.toml names its models)"
        )
    if development:
        settings = dev_settings(args.model or DEV_MODEL, environ=environ)
    else:
        settings = load_settings(config or "broker.toml", environ=environ, dev=args.dev)
    if args.dev:
        print(_DEV_WARNING, file=sys.stderr, flush=True)
    if development:
        assert settings.policy is not None
        print(_DEV_POLICY.format(model=settings.policy.model), file=sys.stderr, flush=True)
    if args.check:
        # Build everything that can fail without the network: the authorizer (PEM file,
        # module:function), the policies, limits and storage, the client (API key).
        from gemini_tokens.serve._build import build_broker

        broker, close_audit = build_broker(settings)
        close_audit()
        names = ", ".join(settings.policy_names())
        auth = settings.auth
        who = "JWT" if auth.jwt is not None else f"authorizer {auth.authorizer}"
        limits, server = settings.limits, settings.server
        renewal = settings.renewal
        renews = f"renewal: {len(renewal.rate_limits)} per caller; " if renewal.enabled else ""
        print(
            f"{settings.source}: OK: {who}; policies: {names}; limits: "
            f"{len(limits.per_caller)} per caller, {len(limits.global_)} global "
            f"on {limits.storage.split('://', 1)[0]}; {renews}listens on "
            f"{server.host}:{server.port}{server.path}"
        )
        del broker
        return 0
    from gemini_tokens.serve._app import run

    return run(settings)


def dev_settings(model: str, *, environ: dict[str, str] | None = None) -> ServeSettings:
    """``--dev`` without a config file: a development policy (``model``, ``uses=1``, 10
    minutes) for anyone who reaches the loopback listener, and no rate limits.

    The ``GEMINI_TOKENS_*`` variables still apply (``GEMINI_TOKENS_SERVER_PORT``...).
    """
    from gemini_tokens.serve._settings import parse_settings

    tables = {
        "auth": {"authorizer": "gemini_tokens.serve._build:allow_everyone"},
        "policy": {"model": model, "uses": 1, "expire_minutes": 10},
    }
    return parse_settings(tables, source=DEV_SOURCE, environ=environ, dev=True)
