"""The ``gemini-tokens`` command.

Errors are printed to stderr as one line, with a non-zero exit status and no traceback:
2 for bad options or configuration, 1 when the service or the network failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]

_EPILOG = """\
The API key is read from GEMINI_API_KEY (else GOOGLE_API_KEY), never from the command line,
so that it stays out of shell history and process listings. GEMINI_BASE_URL points the
command at another endpoint, such as the local emulator.
"""


def _build_parser() -> argparse.ArgumentParser:
    from gemini_tokens._version import __version__

    parser = argparse.ArgumentParser(
        prog="gemini-tokens",
        description="Mint ephemeral tokens for the Gemini Live API.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    create = commands.add_parser(
        "create",
        help="mint a token and print it as JSON",
        description=(
            "Mint an ephemeral token and print it on stdout as JSON, in the token.to_dict()\n"
            "form: name, expireTime, newSessionExpireTime, uses, bidiGenerateContentSetup,\n"
            "fieldMask. Hand that to the client; it never contains the API key."
        ),
        epilog=_EPILOG + "\nexamples:\n"
        "  gemini-tokens create --uses 1 --model gemini-2.5-flash-native-audio-preview-12-2025 "
        "--modality audio\n"
        "  gemini-tokens create --model M --temperature 0.7 --lock-set --lock top_p\n"
        '  gemini-tokens create --config \'{"system_instruction": "Be brief."}\'\n',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    when = create.add_argument_group("lifetime")
    when.add_argument(
        "--uses",
        type=int,
        default=1,
        metavar="N",
        help="sessions the token may open; 0 = no limit (default 1)",
    )
    when.add_argument(
        "--expire-minutes", type=float, metavar="N", help="token lifetime in minutes (default 30)"
    )
    when.add_argument(
        "--new-session-expire-minutes",
        type=float,
        metavar="N",
        help="minutes during which new sessions may open (default 1)",
    )
    what = create.add_argument_group("constraints")
    what.add_argument("--model", help="lock the token to this model")
    what.add_argument(
        "--modality",
        action="append",
        metavar="M",
        help="response modality (audio, text); repeat for several",
    )
    what.add_argument("--temperature", type=float, metavar="T", help="sampling temperature")
    what.add_argument("--voice", metavar="NAME", help="a prebuilt voice name, e.g. Kore")
    what.add_argument(
        "--system-instruction", metavar="TEXT", help="the system instruction, as text"
    )
    what.add_argument(
        "--config",
        metavar="JSON",
        help="more LiveConnectConfig keys as a JSON object (snake_case keys)",
    )
    lock = create.add_argument_group(
        "locking (default: the whole constrained setup is locked, no fieldMask)"
    )
    lock.add_argument(
        "--lock-set",
        action="store_true",
        help="lock only the fields that are set (lock_additional_fields=[])",
    )
    lock.add_argument(
        "--lock",
        action="append",
        metavar="FIELD",
        help="also lock this config field, e.g. temperature; repeat for several",
    )
    connection = create.add_argument_group("connection")
    connection.add_argument(
        "--base-url", metavar="URL", help="service root (default: GEMINI_BASE_URL or Google)"
    )
    connection.add_argument("--timeout", type=float, metavar="S", help="seconds per attempt")
    connection.add_argument("--max-retries", type=int, metavar="N", help="retries (default 2)")
    create.set_defaults(handler=_cmd_create)

    _add_emulator_commands(commands)
    from gemini_tokens.broker._serve_cli import add_serve_command  # `gemini-tokens serve`

    add_serve_command(commands)
    return parser


def _add_emulator_commands(commands: Any) -> None:
    emulator = commands.add_parser(
        "emulator",
        help="serve the local emulator of the token service and the Live API",
        description="Serve the local emulator until Ctrl-C, printing the base URL and key.",
    )
    emulator.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    emulator.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any)")
    emulator.add_argument("--api-key", help="the key the emulator accepts (default: random)")
    emulator.add_argument("--tls", action="store_true", help="serve https/wss with a new CA")
    emulator.add_argument(
        "--count-resumption-as-use", action="store_true", help="resuming uses up a token use"
    )
    emulator.set_defaults(handler=_cmd_emulator)

    demo = commands.add_parser(
        "demo",
        help="run the whole token story against an in-process emulator",
        description=(
            "Mint tokens and open Live sessions with them against an in-process emulator, "
            "printing each step. Needs no key and no network."
        ),
    )
    demo.set_defaults(handler=_cmd_demo)


def _constraints_from(args: argparse.Namespace) -> dict[str, Any] | None:
    from gemini_tokens._errors import ValidationError

    config: dict[str, Any] = {}
    if args.config:
        try:
            loaded = json.loads(args.config)
        except ValueError as exc:
            raise ValidationError("--config", f"is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise ValidationError("--config", "must be a JSON object")
        config.update(loaded)
    for key, value in (
        ("response_modalities", args.modality),
        ("temperature", args.temperature),
        ("speech_config", args.voice),
        ("system_instruction", args.system_instruction),
    ):
        if value is not None:
            config[key] = value
    if args.model is None and not config:
        return None
    constraints: dict[str, Any] = {}
    if args.model is not None:
        constraints["model"] = args.model
    if config:
        constraints["config"] = config
    return constraints


def _cmd_create(args: argparse.Namespace) -> int:
    from gemini_tokens._sync import Client

    lock: list[str] | None = None
    if args.lock_set or args.lock:
        lock = list(args.lock or ())
    options: dict[str, Any] = {}
    if args.timeout is not None:
        options["timeout"] = args.timeout
    if args.max_retries is not None:
        options["max_retries"] = args.max_retries
    constraints = _constraints_from(args)
    with Client(base_url=args.base_url, **options) as client:
        token = client.create(
            uses=args.uses,
            expire_minutes=args.expire_minutes,
            new_session_expire_minutes=args.new_session_expire_minutes,
            live_connect_constraints=constraints,
            lock_additional_fields=lock,
        )
    json.dump(token.to_dict(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _cmd_emulator(args: argparse.Namespace) -> int:
    from gemini_tokens.testing._cli import serve

    return serve(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        tls=args.tls,
        count_resumption_as_use=args.count_resumption_as_use,
    )


def _cmd_demo(args: argparse.Namespace) -> int:
    from gemini_tokens.testing._demo import run_demo

    return run_demo()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    from gemini_tokens._errors import (
        APIError,
        ConfigurationError,
        GeminiTokensError,
        ValidationError,
    )

    parser = _build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    try:
        result: int = args.handler(args)
    except (ValidationError, ConfigurationError) as exc:
        print(f"gemini-tokens: error: {exc}", file=sys.stderr)
        return 2
    except APIError as exc:
        print(f"gemini-tokens: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except GeminiTokensError as exc:  # pragma: no cover - every subclass is handled above
        print(f"gemini-tokens: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
