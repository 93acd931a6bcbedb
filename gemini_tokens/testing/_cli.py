"""``gemini-tokens emulator``: serve the emulator until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

__all__ = ["serve"]


async def _serve(host: str, port: int, api_key: str | None) -> None:
    from gemini_tokens.testing._emulator import Emulator

    async with Emulator(host=host, port=port, api_key=api_key) as emu:
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
            "Press Ctrl-C to stop.",
            flush=True,
        )
        await stop.wait()


def serve(host: str, port: int, api_key: str | None) -> int:
    """Serve the emulator on ``host:port`` until Ctrl-C (or SIGTERM); returns the exit status.

    Prints the base URL and the API key to use (the emulator's own key, not a secret).
    """
    try:
        asyncio.run(_serve(host, port, api_key))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(
            f"gemini-tokens: cannot serve on {host}:{port}: {exc.strerror or exc}", file=sys.stderr
        )
        return 1
    print("Emulator stopped.", flush=True)
    return 0
