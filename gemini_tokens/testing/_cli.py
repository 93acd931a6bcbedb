"""``gemini-tokens emulator``: serve the emulator until Ctrl-C (SIGINT) or SIGTERM.

Both signals are the command's own from the moment it runs, whatever its parent left it:
a shell runs ``gemini-tokens emulator &`` with SIGINT ignored, and a parent may start it
with signals blocked; Python then never installs its Ctrl-C handler, ``asyncio.run`` adds
none either, and SIGINT did nothing at all. `serve` unblocks both and makes them raise
`KeyboardInterrupt` until the event loop runs; `_serve` then hands both to the loop
(`loop.add_signal_handler`) before the emulator starts, so a signal at any later moment,
the ready line's included, just sets the event the command waits on: no task is cancelled
half-way through start-up or clean-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Callable

from gemini_tokens.testing._core import ConfigurationError

__all__ = ["serve"]

#: The signals that stop the emulator.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _tls_lines(ca_file: str) -> str:
    return (
        f"TLS: https and wss, with a throwaway CA whose certificate is at\n  {ca_file}\n"
        "(deleted when the emulator stops). Make clients trust it:\n"
        f"  export NODE_EXTRA_CA_CERTS={ca_file}   # Node\n"
        f"  export SSL_CERT_FILE={ca_file}   # Python\n"
    )


def _nothing() -> None:
    pass


def _take_stop_signals() -> Callable[[], None]:
    """Make SIGINT and SIGTERM reach this process and raise `KeyboardInterrupt`, whatever
    was inherited (ignored, blocked); returns what puts the old state back."""
    if threading.current_thread() is not threading.main_thread():
        return _nothing  # only the main thread may set handlers: serve() in a thread
    mask: set[int | signal.Signals] | None = None
    if hasattr(signal, "pthread_sigmask"):  # not on Windows
        mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    # default_int_handler: asyncio.run sees Python's own Ctrl-C handler and adds its own.
    previous = {sig: signal.signal(sig, signal.default_int_handler) for sig in _STOP_SIGNALS}

    def restore() -> None:
        for sig, handler in previous.items():
            if handler is not None:  # None: set outside Python, cannot be put back
                signal.signal(sig, handler)
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    return restore


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

    # The signals go to the loop before anything can take a while: one that comes during
    # start-up stops the emulator as soon as it is up, and never cancels start() midway.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in _STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # Windows
            loop.add_signal_handler(sig, stop.set)
    async with Emulator(
        host=host,
        port=port,
        api_key=api_key,
        tls=tls,
        count_resumption_as_use=count_resumption_as_use,
        go_away_after=go_away_after,
        go_away_time_left=go_away_time_left,
    ) as emu:
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
    restore = _nothing
    try:
        restore = _take_stop_signals()
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
    except KeyboardInterrupt:  # a signal before the loop took them over
        pass
    except ConfigurationError as exc:
        print(f"gemini-tokens: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"gemini-tokens: cannot serve on {host}:{port}: {exc.strerror or exc}", file=sys.stderr
        )
        return 1
    finally:
        restore()
    print("Emulator stopped.", flush=True)
    return 0
