"""`Policy`: what a token is locked to, and which choices the browser may make.

The policy is checked once, when it is made, against the same rules as ``create()``
(`gemini_tokens.check_create_options`), so a policy the library would refuse never
reaches a request. `check_choices` validates a request's ``config`` against it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from gemini_tokens import ValidationError, camel, check_create_options
from gemini_tokens.broker._body import shown

__all__ = ["Choice", "Policy", "check_choices"]


def _is_number(value: Any) -> bool:
    """A finite JSON number a float can hold (not a bool, NaN, an infinity or a huge int)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int past the float range (JSON lets a client send 400 digits)
        return False


@attrs.frozen
class Choice:
    """The values a client may pick for one config field: a set, or an inclusive range."""

    values: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None

    @classmethod
    def parse(cls, field: str, spec: Any) -> Choice:
        """``[a, b, ...]`` (allowed values) or ``(low, high)`` (an inclusive number range)."""
        where = f"policy.client_may_set.{field}"
        if (
            isinstance(spec, tuple)
            and len(spec) == 2
            and _is_number(spec[0])
            and _is_number(spec[1])
        ):
            if spec[0] > spec[1]:
                raise ValidationError(where, f"range low {spec[0]} is above high {spec[1]}")
            return cls(low=spec[0], high=spec[1])
        if (
            isinstance(spec, tuple)
            and len(spec) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec)
        ):
            raise ValidationError(
                where, "a (low, high) range must be finite numbers a float can hold"
            )
        if isinstance(spec, (list, tuple, set, frozenset)) and not isinstance(spec, str):
            if not spec:
                raise ValidationError(where, "must list at least one allowed value")
            return cls(values=tuple(copy.deepcopy(list(spec))))
        raise ValidationError(
            where,
            "must be a list of allowed values or a (low, high) tuple of numbers, "
            f"not {type(spec).__name__}",
        )

    def examples(self) -> list[Any]:
        """Every value worth checking against ``create()``'s rules."""
        if self.values is not None:
            return list(self.values)
        return [self.low, self.high]

    def allows(self, value: Any) -> bool:
        """Whether ``value`` is one of the values, or a number in the range."""
        if self.values is not None:
            return any(_same(value, allowed) for allowed in self.values)
        assert self.low is not None
        assert self.high is not None
        return _is_number(value) and self.low <= value <= self.high

    def rule(self) -> str:
        """The rule in words, for an error message."""
        if self.values is not None:
            shown = ", ".join(_show(v) for v in self.values)
            return f"must be one of: {shown}"
        return f"must be a number from {self.low:g} to {self.high:g}"


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``True`` is not ``1``, ``1`` is ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=False))
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list, Mapping)):
        return False
    return type(a) in (int, float, str, type(None)) and a == b


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _freeze_config(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError("policy.config", f"must be a mapping, not {type(value).__name__}")
    return copy.deepcopy(dict(value))


def _choices(value: Any) -> dict[str, Choice]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(
            "policy.client_may_set", f"must be a mapping, not {type(value).__name__}"
        )
    out: dict[str, Choice] = {}
    for field, spec in value.items():
        if not isinstance(field, str) or not field.isidentifier():
            raise ValidationError("policy.client_may_set", f"{field!r} is not a config field")
        out[field] = spec if isinstance(spec, Choice) else Choice.parse(field, spec)
    return out


def _check_cap(instance: Any, attribute: Any, value: Any) -> None:
    if value is not None and (not _is_number(value) or value <= 0):
        raise ValidationError(
            "policy.max_session_minutes", "must be a number of minutes above 0, or None (no cap)"
        )


def _locks(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValidationError(
            "policy.lock_additional_fields", "must be None or a list of field names"
        )
    return tuple(value)


@attrs.frozen(kw_only=True, eq=True, hash=False)
class Policy:
    """What every token minted under it is locked to.

    Attributes:
        model: The Live model the token is locked to (``models/`` is added when missing).
        config: The Live config (``response_modalities``, ``system_instruction``, ...), in
            the option names of ``create()``'s ``live_connect_constraints["config"]``.
        lock_additional_fields: As for ``create()``: None locks the whole setup; ``[]``
            locks the fields that are set; names lock those too.
        uses: Sessions a token may open (0 = no limit; keep it small).
        expire_minutes: A token's lifetime in minutes.
        new_session_expire_minutes: Minutes during which a token may open a session.
        client_may_set: Config fields the browser may choose in its request body, each with
            its allowed values: a list (``["Kore", "Puck"]``) or an inclusive range of
            numbers as a tuple (``(0.0, 1.0)``). Anything else comes from the policy.
        max_session_minutes: How long one conversation may run, from its first token: no
            token expires later, whether renewal is on or not (without renewal a conversation
            is one token, so this caps ``expire_minutes`` and
            ``new_session_expire_minutes``); with renewal on
            (``TokenBroker(renewal=True)``), renewals past it are refused. None: no cap.

    Raises:
        ValidationError: a setting that ``create()`` would refuse, named as ``policy.<field>``
            (checked with every allowed client value too).
    """

    model: str | None = None
    config: dict[str, Any] = attrs.field(factory=dict, converter=_freeze_config)
    lock_additional_fields: tuple[str, ...] | None = attrs.field(default=None, converter=_locks)
    uses: int = 1
    expire_minutes: float = 30
    new_session_expire_minutes: float = 1
    client_may_set: dict[str, Choice] = attrs.field(factory=dict, converter=_choices)
    max_session_minutes: float | None = attrs.field(default=60, validator=_check_cap)
    _aliases: dict[str, str] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        aliases = {}
        for name in self.client_may_set:
            aliases[name] = name
            aliases[camel(name)] = name
        object.__setattr__(self, "_aliases", aliases)
        self._check(self.config)
        for field, choice in self.client_may_set.items():
            for value in choice.examples():
                self._check({**self.config, field: value}, chosen=field)

    def _check(self, config: dict[str, Any], chosen: str | None = None) -> None:
        options = self.create_options(config)
        # The times as given, too: a lifetime create() refuses is an error even when
        # max_session_minutes would cap it.
        options["expire_minutes"] = self.expire_minutes
        if _is_number(self.expire_minutes) and _is_number(self.new_session_expire_minutes):
            options["new_session_expire_minutes"] = min(
                self.new_session_expire_minutes, self.expire_minutes
            )
        try:
            check_create_options(**options)
        except ValidationError as exc:
            field = exc.field.replace("live_connect_constraints.", "", 1)
            if chosen is not None and field.startswith(f"config.{chosen}"):
                field = f"client_may_set.{chosen}"
            raise ValidationError(f"policy.{field}", exc.rule) from None

    def create_options(self, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The keyword arguments of ``AsyncClient.create`` for a token with ``config``.

        The times are capped at ``max_session_minutes``: a token starts a conversation.

        Args:
            config: The config to lock (default: the policy's own, with no client choices).
        """
        config = self.config if config is None else config
        expire, new_session = self.expire_minutes, self.new_session_expire_minutes
        cap = self.max_session_minutes
        if cap is not None and _is_number(expire) and cap < expire:
            expire = cap  # a token is a conversation's first: it never outlives the cap
        if _is_number(new_session) and _is_number(expire):
            new_session = min(new_session, expire)
        constraints: dict[str, Any] | None = None
        if self.model is not None or config:
            constraints = {}
            if self.model is not None:
                constraints["model"] = self.model
            if config:
                constraints["config"] = dict(config)
        return {
            "uses": self.uses,
            "expire_minutes": expire,
            "new_session_expire_minutes": new_session,
            "live_connect_constraints": constraints,
            "lock_additional_fields": (
                None if self.lock_additional_fields is None else list(self.lock_additional_fields)
            ),
        }

    def field_for(self, name: str) -> str | None:
        """The ``client_may_set`` field a request's key names (snake or camelCase), or None."""
        return self._aliases.get(name)


def check_choices(policy: Policy, config: Any) -> dict[str, Any]:
    """Validate a request's ``config`` against ``policy.client_may_set``.

    Returns:
        The chosen values by their ``client_may_set`` names (snake_case).

    Raises:
        ValidationError: naming ``config.<field>`` and the rule.
    """
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ValidationError("config", "must be a JSON object")
    chosen: dict[str, Any] = {}
    for key, value in config.items():
        field = policy.field_for(key)
        where = f"config.{shown(key)}"  # a lone surrogate in a key cannot be encoded
        if field is None:
            allowed = ", ".join(policy.client_may_set) or "none"
            raise ValidationError(where, f"may not be set by the client (allowed: {allowed})")
        if field in chosen:
            raise ValidationError(where, "is given twice (snake_case and camelCase)")
        choice = policy.client_may_set[field]
        if not choice.allows(value):  # any number: a 400-digit int is out of range, not a 500
            raise ValidationError(where, choice.rule())
        chosen[field] = value
    return chosen
