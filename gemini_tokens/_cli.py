"""The ``gemini-tokens`` command.

Errors are printed to stderr as one line naming the flag (or environment variable) and the
rule, with a non-zero exit status and no traceback: 2 for bad options or configuration, 1 when
the service or the network failed. A mistyped flag gets the closest one suggested.

Subcommands: each is a function ``_add_NAME(commands)`` in `_COMMANDS` that adds its parser
(with `_Parser`'s error wording, as ``commands.add_parser`` gives it) and sets ``handler``, a
function of the parsed arguments returning the exit status. A handler reports a bad flag value
with ``ValidationError("--flag", "rule")``; it imports what it needs when it runs, so that
``gemini-tokens --help`` stays fast.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn
from urllib.parse import urlsplit

__all__ = ["main"]

_EPILOG = """\
The API key is read from GEMINI_API_KEY (else GOOGLE_API_KEY), never from the command
line, so that it stays out of shell history and process listings. GEMINI_BASE_URL points
the command at another endpoint, such as the local emulator.
"""

_KEY_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
_MODALITIES = ("audio", "text")


class _Parser(argparse.ArgumentParser):
    """argparse with errors that start with the flag (``--timeout: must be ...``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No abbreviations: a flag added later must not change what an old command line means.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        super().error(re.sub(r"^argument ([^:]+): ", r"\1: ", message))

    def unrecognized(self, extras: Sequence[str]) -> NoReturn:
        """Refuse unknown arguments, suggesting the closest flag for a mistyped one."""
        flags = [extra.split("=", 1)[0] for extra in extras if extra.startswith("-")]
        if not flags:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        known = [s for action in self._actions for s in action.option_strings]
        close = difflib.get_close_matches(flags[0], known, n=1)
        hint = f"; did you mean {close[0]}?" if close else f"; see {self.prog} --help"
        self.error(f"{flags[0]}: no such flag{hint}")


# -- flag values -----------------------------------------------------------------------------


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}")
    return value


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number; got {text!r}") from None


def _minutes(text: str) -> float:
    """A finite number of minutes; whether it is in range is the library's rule."""
    value = _number(text, "a number of minutes")
    return int(value) if value.is_integer() else value


def _seconds(text: str) -> float:
    value = _number(text, "a positive number of seconds")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds; got {text}")
    return value


def _seconds_or_zero(text: str) -> float:
    value = _number(text, "a number of seconds, 0 or more")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more; got {text}")
    return value


def _retries(text: str) -> int:
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (no retries) or more; got {value}")
    return value


def _temperature(text: str) -> float:
    return _number(text, "a number")


def _port(text: str) -> int:
    """Every ``--port`` (``emulator`` and ``serve``): 0 picks a free port."""
    value = _whole(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0 (any free port) to 65535; got {value}")
    return value


# -- the commands ----------------------------------------------------------------------------


def _add_create(commands: Any) -> None:
    create = commands.add_parser(
        "create",
        help="mint a token and print it as JSON",
        description=(
            "Mint an ephemeral token and print it on stdout as JSON, in the token.to_dict()\n"
            "form: name, expireTime, newSessionExpireTime, uses, bidiGenerateContentSetup,\n"
            "fieldMask. Hand that to the client; it never contains the API key."
        ),
        epilog=_EPILOG + "\nexamples:\n"
        "  gemini-tokens create --uses 1 --modality audio \\\n"
        "      --model gemini-2.5-flash-native-audio-preview-12-2025\n"
        "  gemini-tokens create --model M --temperature 0.7 --lock-set --lock top_p\n"
        '  gemini-tokens create --config \'{"system_instruction": "Be brief."}\'\n',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    when = create.add_argument_group("lifetime")
    when.add_argument(
        "--uses",
        type=_whole,
        default=1,
        metavar="N",
        help="sessions the token may open; 0 = no limit (default 1)",
    )
    when.add_argument(
        "--expire-minutes",
        type=_minutes,
        metavar="N",
        help="token lifetime in minutes (default 30)",
    )
    when.add_argument(
        "--new-session-expire-minutes",
        type=_minutes,
        metavar="N",
        help="minutes during which new sessions may open (default 1)",
    )
    what = create.add_argument_group("constraints")
    what.add_argument("--model", help="lock the token to this model")
    what.add_argument(
        "--modality",
        action="append",
        type=str.lower,
        choices=_MODALITIES,
        metavar="M",
        help="response modality: audio or text; repeat for several",
    )
    what.add_argument("--temperature", type=_temperature, metavar="T", help="sampling temperature")
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
        help="lock only the fields that are set, so the client may set the others",
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
    connection.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow a plain http:// base URL to a host that is not loopback (sends the key "
        "in clear)",
    )
    connection.add_argument("--timeout", type=_seconds, metavar="S", help="seconds per attempt")
    connection.add_argument("--max-retries", type=_retries, metavar="N", help="retries (default 2)")
    create.set_defaults(handler=_cmd_create)


def _add_emulator(commands: Any) -> None:
    emulator = commands.add_parser(
        "emulator",
        help="serve the local emulator of the token service and the Live API",
        description="Serve the local emulator until Ctrl-C, printing the base URL and key.",
    )
    emulator.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    emulator.add_argument(
        "--port", type=_port, default=8765, help="port (default 8765; 0 = any free port)"
    )
    emulator.add_argument("--api-key", help="the key the emulator accepts (default: random)")
    emulator.add_argument("--tls", action="store_true", help="serve https/wss with a new CA")
    emulator.add_argument(
        "--count-resumption-as-use", action="store_true", help="resuming uses up a token use"
    )
    emulator.add_argument(
        "--go-away-after",
        type=_seconds_or_zero,
        metavar="S",
        help="send every Live session goAway S seconds after setupComplete (default: never)",
    )
    emulator.add_argument(
        "--go-away-time-left",
        type=_seconds_or_zero,
        default=5.0,
        metavar="S",
        help="the timeLeft goAway announces, then the socket closes (default 5)",
    )
    emulator.set_defaults(handler=_cmd_emulator)


def _add_demo(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="run the whole token story against an in-process emulator",
        description=(
            "Mint tokens and open Live sessions with them against an in-process emulator, "
            "printing each step. Needs no key and no network."
        ),
    )
    demo.set_defaults(handler=_cmd_demo)


def _add_serve(commands: Any) -> None:
    from gemini_tokens.serve._cli import add_serve_command  # `gemini-tokens serve`

    add_serve_command(commands, port=_port)


_COMMANDS: tuple[Callable[[Any], None], ...] = (_add_create, _add_emulator, _add_demo, _add_serve)


def _build_parser() -> tuple[_Parser, dict[str, _Parser]]:
    """The parser, and each subcommand's parser by name."""
    from gemini_tokens._version import __version__

    parser = _Parser(
        prog="gemini-tokens",
        description="Mint ephemeral tokens for the Gemini Live API.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for add in _COMMANDS:
        add(commands)
    return parser, commands.choices


# -- create ----------------------------------------------------------------------------------

#: Where a `create()` option comes from on the command line (its dedicated flag).
_FLAGS = {
    "uses": "--uses",
    "expire_minutes": "--expire-minutes",
    "new_session_expire_minutes": "--new-session-expire-minutes",
    "live_connect_constraints.model": "--model",
    "live_connect_constraints.config.response_modalities": "--modality",
    "live_connect_constraints.config.temperature": "--temperature",
    "live_connect_constraints.config.speech_config": "--voice",
    "live_connect_constraints.config.system_instruction": "--system-instruction",
    "lock_additional_fields": "--lock",
}
_CONFIG = "live_connect_constraints.config."


def _flag_for(field: str, args: argparse.Namespace) -> str:
    """The flag (or ``--config: key``) that gave the option at ``field``."""
    for option, flag in _FLAGS.items():
        if field == option or field.startswith((f"{option}.", f"{option}[")):
            given = getattr(args, flag[2:].replace("-", "_"), None) is not None
            if given or not option.startswith(_CONFIG):
                return flag
    if field.startswith(_CONFIG):
        return f"--config: {field[len(_CONFIG) :]}"
    return "--config" if field.startswith("live_connect_constraints") else field


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


def _check_environment(args: argparse.Namespace) -> None:
    """The key and the base URL, with advice in the command line's terms."""
    from gemini_tokens._config import is_loopback_host
    from gemini_tokens._errors import ConfigurationError, ValidationError

    if not any(os.environ.get(name, "").strip() for name in _KEY_VARIABLES):
        raise ConfigurationError(
            "no API key: set GEMINI_API_KEY (or GOOGLE_API_KEY) in the environment; "
            "the command never takes a key on its command line"
        )
    source = "--base-url" if args.base_url is not None else "GEMINI_BASE_URL"
    url = args.base_url if args.base_url is not None else os.environ.get("GEMINI_BASE_URL")
    if not url:
        return
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(source, f"must be an http(s) URL with a host; got {url!r}")
    if (
        parts.scheme == "http"
        and not args.allow_insecure_http
        and not is_loopback_host(parts.hostname)
    ):
        raise ValidationError(
            source,
            "plain http:// to a host that is not loopback would send the API key in clear; "
            "use https:// or add --allow-insecure-http",
        )


def _cmd_create(args: argparse.Namespace) -> int:
    from gemini_tokens._errors import ValidationError
    from gemini_tokens._sync import Client

    lock: list[str] | None = None
    if args.lock_set or args.lock:
        lock = list(args.lock or ())
    options: dict[str, Any] = {}
    if args.timeout is not None:
        options["timeout"] = args.timeout
    if args.max_retries is not None:
        options["max_retries"] = args.max_retries
    if args.allow_insecure_http:
        options["allow_insecure_http"] = True
    constraints = _constraints_from(args)
    _check_environment(args)
    with Client(base_url=args.base_url, **options) as client:
        try:
            token = client.create(
                uses=args.uses,
                expire_minutes=args.expire_minutes,
                new_session_expire_minutes=args.new_session_expire_minutes,
                live_connect_constraints=constraints,
                lock_additional_fields=lock,
            )
        except ValidationError as exc:
            raise ValidationError(_flag_for(exc.field, args), exc.rule) from None
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
        go_away_after=args.go_away_after,
        go_away_time_left=args.go_away_time_left,
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

    parser, subcommands = _build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        subcommands.get(args.command, parser).unrecognized(extras)
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
