"""Test your token endpoints offline: a local emulator of the token service and the Live API.

As moto does for AWS, `Emulator` stands in for the real service on 127.0.0.1::

    from gemini_tokens.testing import Emulator

    async with Emulator() as emu:                     # or: with Emulator.running() as emu:
        client = gemini_tokens.AsyncClient(emu.api_key, base_url=emu.base_url)
        ...

It mints tokens as the service does, enforces them on the Live API WebSocket (uses,
expiry, locked fields), reads what it receives by proto3's JSON rules, answers text and
audio turns, issues resumption handles and sends ``goAway`` on demand, records what it saw,
can fail or stall on demand, and has a clock a test can advance. With pytest, the
``gemini_emulator`` and ``gemini_emulator_sync`` fixtures start one and point
``GEMINI_BASE_URL`` and ``GEMINI_API_KEY`` at it.
"""

from __future__ import annotations

from gemini_tokens.testing._clock import Clock
from gemini_tokens.testing._emulator import Emulator
from gemini_tokens.testing._records import IssuedToken, LiveSession, RecordedRequest

__all__ = ["Clock", "Emulator", "IssuedToken", "LiveSession", "RecordedRequest"]
