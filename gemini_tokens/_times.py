"""Instants on the wire: RFC 3339 timestamps, written in UTC with a ``Z`` and read leniently."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

__all__ = ["format_time", "parse_time"]

_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")


def format_time(value: dt.datetime) -> str:
    """An instant as the wire writes it: RFC 3339 in UTC with a ``Z``.

    ``2031-05-06T07:08:09Z``, with microseconds when they are not zero.
    """
    if value.tzinfo is not dt.timezone.utc:
        value = value.astimezone(dt.timezone.utc)
    return value.isoformat()[:-6] + "Z"  # "+00:00" -> "Z"


def parse_time(value: Any) -> dt.datetime | None:
    """Parse an RFC 3339 timestamp from the wire (``Z``, offsets, up to nanoseconds).

    Returns None for anything that is not one.
    """
    if not isinstance(value, str):
        return None
    text = value.strip().replace("z", "Z")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # Python before 3.11 accepts at most 6 fractional digits; the service may send 9.
    if "." in text:
        text = _LONG_FRACTION.sub(r"\1", text)
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    try:
        return parsed.astimezone(dt.timezone.utc)
    except OverflowError:  # "0001-01-01T00:00:00+01:00" is before datetime.min in UTC
        return None
