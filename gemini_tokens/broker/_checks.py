"""Checks of the broker's limit settings without making a broker: for a service that reads
them from a file and must refuse a bad one before it starts."""

from __future__ import annotations

from collections.abc import Iterable

from gemini_tokens.broker._limiter import parse_limits, storage_uri_for

__all__ = ["check_rate_limits", "check_storage_uri"]


def check_rate_limits(value: Iterable[str] | str | None) -> None:
    """Check rate limits as `TokenBroker` reads them (``["5/minute", "100/day"]``).

    Args:
        value: The limits: a list of strings, one string (``"5/minute;100/day"``) or None.

    Raises:
        InvalidSettingError: ``field`` is ``rate_limits``; ``rule`` names the unparsable
            entry.
    """
    parse_limits("rate_limits", value)


def check_storage_uri(uri: str) -> None:
    """Check a limiter storage URI as `TokenBroker` reads it (``memory://``, ``redis://...``).

    Nothing is connected to.

    Args:
        uri: The URI.

    Raises:
        InvalidSettingError: ``field`` is ``storage_uri``; ``rule`` says what is wrong
            (never with the URI's password).
    """
    storage_uri_for(uri)
