"""``gemini-tokens emulator``: serve the emulator until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from gemini_tokens.testing._core import ConfigurationError

__all__ = ["serve"]


def _tls_lines(ca_file: str) -> str:
    return (
        f"TLS: https and wss, with a throwaway CA whose certificate is at\n  {ca_file}\n"
        "(deleted when the emulator stops). Make clients trust it:\n"
        f"  export NODE_EXTRA_CA_CERTS={ca_file}   # Node\n"
        f"  export SSL_CERT_FILE={ca_file}   # Python\n"
    )


def _go_away_lines(
    base_url: str, after: float | None, time_left: float, ca_file: str | None
) -> str:
    every = (
        f"Every Live session gets goAway {after:g} s after setupComplete (--go-away-after), "
        f"then closes {time_left:g} s later.\n"
        if after is not None
        else ""
    )
    curl = f"curl --cacert {ca_file}" if ca_file else "curl"
    return every + (
        "Test controls (loopback only), e.g. goAway to every open Live session now:\n"
        f"  {curl} -X POST {base_url}/_emulator/go-away\n"
    )


async def _serve(
    host: str,
    port: int,
    api_key: str | None,
    tls: bool,
    count_resumption_as_use: bool,
    go_away_after: float | None = None,
    go_away_time_left: float = 5.0,
) -> None:
    from gemini_tokens.testing._emulator import Emulator

    async with Emulator(
        host=host,
        port=port,
        api_key=api_key,
        tls=tls,
        count_resumption_as_use=count_resumption_as_use,
        go_away_after=go_away_after,
        go_away_time_left=go_away_time_left,
    ) as emu:
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        example = emu.live_url("auth_tokens/NAME").replace("auth_tokens%2FNAME", "<token name>")
        print(
            f"Gemini token service and Live API emulator on {emu.base_url}\n"
            "Point your app or the CLI at it:\n"
            f"  export GEMINI_BASE_URL={emu.base_url}\n"
            f"  export GEMINI_API_KEY={emu.api_key}\n"
            "  gemini-tokens create --model gemini-live --modality audio\n"
            f"Live sessions open at\n  {example}\n"
            + (_tls_lines(emu.ca_file) if tls else "")
            + (
                "Resuming a session counts as a use of its token (--count-resumption-as-use).\n"
                if count_resumption_as_use
                else ""
            )
            + _go_away_lines(
                emu.base_url, go_away_after, go_away_time_left, emu.ca_file if tls else None
            )
            + "Press Ctrl-C to stop.",
            flush=True,
        )
        await stop.wait()


def serve(
    host: str,
    port: int,
    api_key: str | None,
    *,
    tls: bool = False,
    count_resumption_as_use: bool = False,
    go_away_after: float | None = None,
    go_away_time_left: float = 5.0,
) -> int:
    """Serve the emulator on ``host:port`` until Ctrl-C (or SIGTERM); returns the exit status.

    Prints the base URL and the API key to use (the emulator's own key, not a secret).

    Args:
        host: The address to bind.
        port: The port; 0 picks a free one.
        api_key: The key it accepts; None for a random one.
        tls: Serve https and wss with a throwaway CA (needs ``trustme``); the CA's PEM file
            path is printed with the ``NODE_EXTRA_CA_CERTS`` and ``SSL_CERT_FILE`` lines.
        count_resumption_as_use: Count resuming a session as a use of its token.
        go_away_after: Send every Live session ``goAway`` this many seconds after its
            ``setupComplete``; None never does.
        go_away_time_left: The ``timeLeft`` those ``goAway`` messages (and the control
            route's, by default) announce, in seconds.

    The loopback-only test controls (``/_emulator/...``) are printed with a ``curl`` line.
    """
    try:
        asyncio.run(
            _serve(
                host,
                port,
                api_key,
                tls,
                count_resumption_as_use,
                go_away_after,
                go_away_time_left,
            )
        )
    except KeyboardInterrupt:
        pass
    except ConfigurationError as exc:
        print(f"gemini-tokens: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"gemini-tokens: cannot serve on {host}:{port}: {exc.strerror or exc}", file=sys.stderr
        )
        return 1
    print("Emulator stopped.", flush=True)
    return 0
