"""The ``gemini-tokens serve`` subcommand: its options, and what it runs.

``gemini-tokens serve --config broker.toml`` runs the broker as a service;
``--check`` validates the settings (file and environment) and exits; ``--dev`` listens on
loopback only, lets any origin in, and says so loudly (with no config file, it runs a
development policy: ``--model``, ``uses=1``, 10 minutes, anyone on this machine).
"""

from __future__ import annotations

import argparse
import os
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


def run_serve(args: argparse.Namespace) -> int:
    """Run (or ``--check``) the service; returns the exit status.

    A bad setting raises `SettingsError` (a ConfigurationError: the CLI prints it on one
    line and exits 2) before anything listens.
    """
    from gemini_tokens import ConfigurationError
    from gemini_tokens.serve._settings import load_settings

    environ = dict(os.environ)
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
        from gemini_tokens.serve._app import build_broker

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
        "auth": {"authorizer": "gemini_tokens.serve._app:allow_everyone"},
        "policy": {"model": model, "uses": 1, "expire_minutes": 10},
    }
    return parse_settings(tables, source=DEV_SOURCE, environ=environ, dev=True)
