"""Conversations that outlast a token: the signed ``session`` value and renewal.

With renewal on, every minted answer carries ``session``: an opaque value that binds the
conversation to its caller, its start time and its policy and client choices, signed with
HMAC-SHA256 under the broker's secret. ``POST {"renew": "<session>"}`` then mints the next
token of that conversation: the same policy and choices, for the same caller (``authorize``
runs again), ``uses=1``, and an expiry never past the conversation's start plus
``Policy.max_session_minutes``. Past that cap, or for a session that is another caller's or
forged, the answer is 403 with a reason the client can show. Renewals count against their
own ``renewal_rate_limits`` (and the global limits, which protect the API key's quota).

The secret and the session values are never logged, audited or shown in a repr.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from gemini_tokens import ConfigurationError, ValidationError
from gemini_tokens.broker._http import Refusal
from gemini_tokens.broker._limiter import Limiter, parse_limits
from gemini_tokens.broker._policy import Policy, check_choices
from gemini_tokens.broker._types import Caller

__all__ = ["MIN_SECRET_BYTES", "SECRET_ENV", "Conversation", "Renewal"]


#: The environment variable the broker reads its session secret from.
SECRET_ENV = "GEMINI_TOKENS_BROKER_SECRET"
#: The shortest secret accepted, in bytes (UTF-8 for a string).
MIN_SECRET_BYTES = 32
#: A renewal with less than this left before the cap is refused as past it.
MIN_LEFT_SECONDS = 5
_VERSION = "v1"
_DOMAIN = b"gemini-tokens broker session v1\x00"
_CALLER_DOMAIN = b"gemini-tokens broker caller v1\x00"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def policy_digest(policy: Policy, choices: Mapping[str, Any]) -> str:
    """A digest of what a conversation's tokens are minted with: policy and choices."""
    options = policy.create_options({**policy.config, **choices})
    options["max_session_minutes"] = policy.max_session_minutes
    canonical = json.dumps(options, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _still_allowed(policy: Policy, choices: Mapping[str, Any]) -> bool:
    """Whether the policy of today still lets the client make the conversation's choices."""
    try:
        check_choices(policy, dict(choices))
    except ValidationError:
        return False
    return True


@attrs.frozen(kw_only=True)
class Conversation:
    """What a verified session value says (its caller is the one who presented it).

    Attributes:
        start: When the conversation's first token was minted (whole seconds, UTC).
        choices: The client's choices of the first request.
        digest: `policy_digest` at the start.
    """

    start: dt.datetime
    choices: dict[str, Any] = attrs.field(repr=False)
    digest: str = attrs.field(repr=False)


def _secret_bytes(secret: str | bytes | None) -> bytes:
    if secret is None:
        secret = os.environ.get(SECRET_ENV) or None
    if secret is None:
        raise ConfigurationError(
            f"renewal: needs a secret to sign sessions: pass secret=... or set {SECRET_ENV} "
            f'(at least {MIN_SECRET_BYTES} random bytes, e.g. `python -c "import secrets; '
            'print(secrets.token_urlsafe(32))"`; the same on every replica)'
        )
    if isinstance(secret, str):
        secret = secret.encode()
    if not isinstance(secret, bytes):
        raise ConfigurationError("secret: must be a string or bytes")
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigurationError(f"secret: must be at least {MIN_SECRET_BYTES} bytes long")
    return secret


class Renewal:
    """Signs and checks sessions, and counts renewals (internal to `TokenBroker`).

    Args:
        secret: The signing secret, or None to read ``GEMINI_TOKENS_BROKER_SECRET``.
        renewal_rate_limits: Limits per caller on renewals (``["30/hour"]``).
        limiter: The broker's limiter: renewals are counted on its storage, under keys of
            their own, and against its global limits too.

    Raises:
        ConfigurationError: no secret, a short one, or an unparsable limit.
    """

    def __init__(
        self,
        secret: str | bytes | None,
        renewal_rate_limits: Iterable[str] | str | None,
        limiter: Limiter,
    ) -> None:
        self.__secret = _secret_bytes(secret)
        self._limiter = limiter
        self.limits = parse_limits("renewal_rate_limits", renewal_rate_limits)

    def __repr__(self) -> str:
        return f"Renewal(limits={[str(item) for item in self.limits]})"

    def now(self) -> dt.datetime:
        """The broker's clock (UTC): conversation starts and caps are judged on it."""
        return _utcnow()

    # --- signing ----------------------------------------------------------------------

    def _mac(self, data: bytes) -> bytes:
        return hmac.new(self.__secret, _DOMAIN + data, hashlib.sha256).digest()

    def _caller_tag(self, caller_id: str) -> str:
        mac = hmac.new(self.__secret, _CALLER_DOMAIN + caller_id.encode(), hashlib.sha256)
        return _b64(mac.digest()[:16])

    def sign(
        self, caller: Caller, policy: Policy, choices: Mapping[str, Any], start: dt.datetime
    ) -> str:
        """The session value of a conversation that ``caller`` starts now."""
        payload = {
            "c": self._caller_tag(caller.id),
            "s": int(start.timestamp()),
            "d": policy_digest(policy, choices),
            "k": dict(choices),
        }
        data = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return f"{_VERSION}.{_b64(data)}.{_b64(self._mac(data))}"

    def verify(self, caller: Caller, value: Any) -> Conversation:
        """Check a session value presented by ``caller``.

        Raises:
            Refusal: 400 when it is not a string; 403 when it is forged, damaged or another
                caller's.
        """
        if not isinstance(value, str) or not value:
            raise Refusal(
                400,
                "invalid",
                "invalid_argument",
                "renew: must be the session string of an earlier token answer",
            )
        forged = Refusal(
            403,
            "denied",
            "session_invalid",
            "this conversation cannot be renewed: its session is not valid; start a new one",
        )
        version, _, rest = value.partition(".")
        encoded, _, mac = rest.partition(".")
        try:
            data, given = _unb64(encoded), _unb64(mac)
        except (binascii.Error, ValueError):
            raise forged from None
        if version != _VERSION or not hmac.compare_digest(given, self._mac(data)):
            raise forged
        try:
            payload = json.loads(data)
            tag, start, digest, choices = payload["c"], payload["s"], payload["d"], payload["k"]
        except (ValueError, KeyError, TypeError):  # signed by us, so only if the format changed
            raise forged from None
        if not hmac.compare_digest(str(tag), self._caller_tag(caller.id)):
            raise Refusal(
                403,
                "denied",
                "session_not_yours",
                "this conversation belongs to another user; start a new one",
            )
        return Conversation(
            start=dt.datetime.fromtimestamp(int(start), dt.timezone.utc),
            choices=dict(choices),
            digest=str(digest),
        )

    # --- the rules --------------------------------------------------------------------

    def first_times(self, policy: Policy, start: dt.datetime) -> dict[str, Any]:
        """``create()`` time options for a conversation's first token (capped too)."""
        return self._times(policy, start, start)

    def next_times(
        self, policy: Policy, conversation: Conversation, choices: Mapping[str, Any]
    ) -> dict[str, Any]:
        """``create()`` options for the next token of ``conversation``.

        Raises:
            Refusal: 403 when the policy changed (its settings, or what it lets the client
                choose: a revoked choice ends the conversation at its next renewal) or the
                conversation reached its cap.
        """
        if not hmac.compare_digest(
            conversation.digest, policy_digest(policy, choices)
        ) or not _still_allowed(policy, choices):
            raise Refusal(
                403,
                "denied",
                "session_policy_changed",
                "this conversation cannot be renewed: its settings changed since it began; "
                "start a new one",
            )
        now = self.now()
        cap = policy.max_session_minutes
        if cap is not None:
            end = conversation.start + dt.timedelta(minutes=cap)
            if (end - now).total_seconds() < MIN_LEFT_SECONDS:
                raise Refusal(
                    403,
                    "denied",
                    "session_cap",
                    f"this conversation reached its limit of {cap:g} minutes; start a new one",
                )
        return {**self._times(policy, conversation.start, now), "uses": 1}

    def _times(self, policy: Policy, start: dt.datetime, now: dt.datetime) -> dict[str, Any]:
        expire = now + dt.timedelta(minutes=policy.expire_minutes)
        cap = policy.max_session_minutes
        if cap is not None:
            expire = min(expire, start + dt.timedelta(minutes=cap))
        new_session = min(now + dt.timedelta(minutes=policy.new_session_expire_minutes), expire)
        return {
            "expire_minutes": None,
            "new_session_expire_minutes": None,
            "expire_time": expire,
            "new_session_expire_time": new_session,
        }

    async def hit(self, caller: Caller, on_limiter_error: str) -> None:
        """Count one renewal for ``caller``: its renewal limits, then the global ones.

        Raises:
            Refusal: 429 (a limit) or 503 (the limiter's storage down, failing closed).
        """
        await self._limiter.enforce(
            caller.id, on_limiter_error, self.limits, key="renewal", what="renewals"
        )
