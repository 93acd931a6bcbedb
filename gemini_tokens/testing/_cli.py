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


async def _serve(
    host: str, port: int, api_key: str | None, tls: bool, count_resumption_as_use: bool
) -> None:
    from gemini_tokens.testing._emulator import Emulator

    async with Emulator(
        host=host,
        port=port,
        api_key=api_key,
        tls=tls,
        count_resumption_as_use=count_resumption_as_use,
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
    """
    try:
        asyncio.run(_serve(host, port, api_key, tls, count_resumption_as_use))
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
