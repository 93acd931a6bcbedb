"""Options -> a validated `TokenRequest`, before anything is sent.

Every rule the service enforces that can be checked locally is checked here, so a mistake
surfaces as a `ValidationError` naming the option, not as a 400 from the network.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from gemini_tokens._converters import structure_constraints
from gemini_tokens._errors import ValidationError
from gemini_tokens._models import TokenRequest
from gemini_tokens._naming import LOCKABLE_FIELDS, did_you_mean, snake

__all__ = [
    "CREATE_OPTIONS",
    "DEFAULT_EXPIRE",
    "DEFAULT_NEW_SESSION_EXPIRE",
    "MAX_AHEAD",
    "build_request",
    "reject_unknown",
]

_MAX_INT32 = 2**31 - 1
#: The service refuses times this far ahead or more.
MAX_AHEAD = dt.timedelta(hours=20)
#: The service's defaults (wire.md), which this library also sends when a time is omitted.
DEFAULT_EXPIRE = dt.timedelta(minutes=30)
DEFAULT_NEW_SESSION_EXPIRE = dt.timedelta(minutes=1)

#: The keyword options of ``create()``.
CREATE_OPTIONS = (
    "uses",
    "expire_minutes",
    "expire_time",
    "new_session_expire_minutes",
    "new_session_expire_time",
    "live_connect_constraints",
    "lock_additional_fields",
    "max_retries",
    "deadline",
)


def reject_unknown(options: Mapping[str, Any]) -> None:
    """Raise for keyword options ``create()`` does not know, with a suggestion."""
    for name in options:
        raise ValidationError(
            name, f"is not an option of create(){did_you_mean(name, CREATE_OPTIONS)}"
        )


def _check_minutes(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(name, f"must be a number of minutes, not {type(value).__name__}")
    if not value > 0:
        raise ValidationError(name, f"must be positive; got {value!r}")
    # Compared as numbers: timedelta(minutes=1e300) would overflow; inf and nan fail here too.
    if not value < MAX_AHEAD / dt.timedelta(minutes=1):
        raise ValidationError(name, f"must be less than 20 hours (1200 minutes); got {value!r}")
    return float(value)


def _check_time(name: str, value: Any, now: dt.datetime) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise ValidationError(name, f"must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(
            name, "must be timezone-aware (e.g. datetime.now(timezone.utc) + timedelta(...))"
        )
    if value <= now:
        raise ValidationError(name, "must be in the future")
    if value - now >= MAX_AHEAD:
        raise ValidationError(name, "must be less than 20 hours ahead (the service's limit)")
    return value.astimezone(dt.timezone.utc)


def _resolve(
    minutes_name: str,
    minutes: Any,
    time_name: str,
    time: Any,
    now: dt.datetime,
) -> dt.datetime | None:
    if minutes is not None and time is not None:
        raise ValidationError(minutes_name, f"give either {minutes_name} or {time_name}, not both")
    if time is not None:
        return _check_time(time_name, time, now)
    if minutes is not None:
        return now + dt.timedelta(minutes=_check_minutes(minutes_name, minutes))
    return None


def _check_lock(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not value and type(value) in (list, tuple):
        return ()  # the usual "lock only what is set"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValidationError(
            "lock_additional_fields", "must be None or a list of config field names"
        )
    names = []
    for index, name in enumerate(value):
        field = f"lock_additional_fields[{index}]"
        if not isinstance(name, str):
            raise ValidationError(field, f"must be a string, not {type(name).__name__}")
        if snake(name) not in LOCKABLE_FIELDS:
            raise ValidationError(
                field,
                f"{name!r} is not a lockable config field{did_you_mean(name, LOCKABLE_FIELDS)}",
            )
        names.append(name)
    return tuple(names)


def _resolve_times(
    expire_minutes: Any,
    expire_time: Any,
    new_session_expire_minutes: Any,
    new_session_expire_time: Any,
    now: dt.datetime,
) -> tuple[dt.datetime, dt.datetime]:
    """The token's expiry and new-session deadline from the time options, checked."""
    expire = _resolve("expire_minutes", expire_minutes, "expire_time", expire_time, now)
    new_session = _resolve(
        "new_session_expire_minutes",
        new_session_expire_minutes,
        "new_session_expire_time",
        new_session_expire_time,
        now,
    )
    if expire is None:
        expire = now + DEFAULT_EXPIRE
    if new_session is None:
        # The default new-session deadline never outlives the token.
        return expire, min(now + DEFAULT_NEW_SESSION_EXPIRE, expire)
    if new_session > expire:
        name = (
            "new_session_expire_time"
            if new_session_expire_time is not None
            else "new_session_expire_minutes"
        )
        raise ValidationError(name, "must not be later than the token's expiry")
    return expire, new_session


def build_request(
    *,
    uses: Any = 1,
    expire_minutes: Any = None,
    expire_time: Any = None,
    new_session_expire_minutes: Any = None,
    new_session_expire_time: Any = None,
    live_connect_constraints: Any = None,
    lock_additional_fields: Any = None,
    now: dt.datetime | None = None,
) -> TokenRequest:
    """Validate ``create()``'s options into a `TokenRequest`.

    Omitted times are exact defaults counted from ``now`` (the current instant when not
    given): the expiry ``now + 30 min``, the new-session deadline ``now + 60 s`` (never
    after the expiry).

    Raises:
        ValidationError: naming the option and the rule it breaks.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    if isinstance(uses, bool) or not isinstance(uses, int):
        raise ValidationError("uses", f"must be an integer, not {type(uses).__name__}")
    if uses < 0:
        raise ValidationError("uses", f"must be 0 (no limit) or more; got {uses}")
    if uses > _MAX_INT32:  # the service's field is an int32
        raise ValidationError("uses", f"must be at most {_MAX_INT32}; got {uses}")
    expire, new_session = _resolve_times(
        expire_minutes,
        expire_time,
        new_session_expire_minutes,
        new_session_expire_time,
        now,
    )
    constraints = (
        None
        if live_connect_constraints is None
        else structure_constraints(live_connect_constraints)
    )
    return TokenRequest(
        uses=uses,
        expire_time=expire,
        new_session_expire_time=new_session,
        constraints=constraints,
        lock_additional_fields=_check_lock(lock_additional_fields),
    )
