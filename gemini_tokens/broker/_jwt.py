"""Caller identity from a bearer JWT, verified with PyJWT.

`JWTAuthorizer` is an ``authorize`` hook for `TokenBroker`: it reads
``Authorization: Bearer <jwt>``, checks the signature against keys from a JWKS URL, a PEM
file or an HMAC secret, then the issuer, the audience and the expiry (with a small leeway),
and names the caller by one claim (``sub`` by default). The rules that matter:

- an allow-list of algorithms, never ``none``, and never an ``HS*`` algorithm with a public
  key (a JWKS or a PEM file): that is the "HS256 signed with the public key" forgery;
- JWKS keys are cached; a token with an unknown ``kid`` makes the set be fetched again, but
  never more than once a minute (``jwks_min_refresh_seconds``), so garbage tokens cannot
  make the broker hammer the identity provider;
- a refusal is a 401 with a short fixed message; the token itself is never quoted, logged
  or kept.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attrs

from gemini_tokens import ConfigurationError, is_loopback_host
from gemini_tokens.broker._errors import InvalidSettingError

if TYPE_CHECKING:
    from gemini_tokens.broker._types import BrokerRequest, Caller

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "HMAC_ALGORITHMS",
    "JWTAuthorizer",
    "JWTError",
    "JWTSettings",
    "KeySource",
]

logger = logging.getLogger("gemini_tokens.broker.jwt")

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset(
    {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "ES256K",
        "EdDSA",
    }
)
#: The largest JWKS document read (1 MiB) and the time a fetch may take.
MAX_JWKS_BYTES = 1024 * 1024
JWKS_TIMEOUT = 5.0
#: The largest bearer token looked at; a longer header is refused unread.
MAX_TOKEN_CHARS = 16 * 1024


class JWTError(Exception):
    """Why a token was refused: a short, fixed message, safe to show (never the token)."""


def _positive(name: str) -> Callable[[object, object, object], None]:
    def check(_: object, __: object, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise InvalidSettingError(name, f"must be a number of seconds >= 0; got {value!r}")

    return check


def _audience(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidSettingError("audience", "must be a string or a non-empty list of strings")
    if not all(isinstance(v, str) and v for v in value):
        raise InvalidSettingError("audience", "every audience must be a non-empty string")
    return tuple(value)


def _algorithms(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidSettingError("algorithms", "must be a non-empty list such as ['RS256']")
    known = HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS
    for alg in value:
        if not isinstance(alg, str) or alg.lower() == "none":
            raise InvalidSettingError("algorithms", "'none' is never allowed (unsigned tokens)")
        if alg not in known:
            raise InvalidSettingError(
                "algorithms",
                f"{alg!r} is not a signing algorithm; choose from " + ", ".join(sorted(known)),
            )
    return tuple(value)


def _claims(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise InvalidSettingError("attribute_claims", "must be a list of claim names")
    return tuple(value)


@attrs.frozen(kw_only=True)
class JWTSettings:
    """How bearer JWTs are verified. Exactly one of ``jwks_url``, ``public_key_file`` and
    ``hmac_secret`` gives the keys.

    Attributes:
        issuer: The ``iss`` every token must carry (your identity provider's URL).
        audience: The ``aud`` a token must carry (one of these).
        algorithms: The allow-list, e.g. ``("RS256",)``. Never ``none``; ``HS*`` only with
            ``hmac_secret``, asymmetric ones only with a JWKS or a PEM key.
        jwks_url: The identity provider's JWKS (``https://``; ``http://`` only to loopback).
        public_key_file: A PEM public key file.
        hmac_secret: A shared secret (HS256/384/512). Kept out of the repr.
        caller_claim: The claim that names the caller (default ``sub``).
        attribute_claims: Claims copied into ``Caller.attributes`` (e.g. ``("plan",)``) for
            a policy chosen per caller.
        leeway_seconds: Clock skew tolerated on ``exp``/``nbf``/``iat`` (default 30 s).
        jwks_cache_seconds: How long a fetched JWKS is used before it is fetched again.
        jwks_min_refresh_seconds: The least time between two fetches (default 60 s).

    Raises:
        InvalidSettingError: a rule broken (a `ConfigurationError` whose ``field`` is the
            setting, or ``jwt`` for a rule between settings).
    """

    issuer: str = attrs.field()
    audience: tuple[str, ...] = attrs.field(converter=_audience)
    algorithms: tuple[str, ...] = attrs.field(converter=_algorithms)
    jwks_url: str | None = None
    public_key_file: str | None = None
    hmac_secret: str | None = attrs.field(default=None, repr=False)
    caller_claim: str = "sub"
    attribute_claims: tuple[str, ...] = attrs.field(default=(), converter=_claims)
    leeway_seconds: float = attrs.field(default=30.0, validator=_positive("leeway_seconds"))
    jwks_cache_seconds: float = attrs.field(
        default=600.0, validator=_positive("jwks_cache_seconds")
    )
    jwks_min_refresh_seconds: float = attrs.field(
        default=60.0, validator=_positive("jwks_min_refresh_seconds")
    )

    @issuer.validator
    def _check_issuer(self, _: object, value: object) -> None:
        if not isinstance(value, str) or not value.strip():
            raise InvalidSettingError("issuer", "must be the identity provider's issuer (iss)")

    def __attrs_post_init__(self) -> None:
        sources = [
            name
            for name in ("jwks_url", "public_key_file", "hmac_secret")
            if getattr(self, name) is not None
        ]
        if len(sources) != 1:
            raise InvalidSettingError(
                "jwt",
                "give exactly one of jwks_url, public_key_file and hmac_secret"
                + (f" (got {', '.join(sources)})" if sources else ""),
            )
        if self.hmac_secret is not None:
            if not isinstance(self.hmac_secret, str) or len(self.hmac_secret) < 32:
                raise InvalidSettingError("hmac_secret", "must be at least 32 characters")
            wrong = [a for a in self.algorithms if a not in HMAC_ALGORITHMS]
            if wrong:
                raise InvalidSettingError(
                    "algorithms",
                    f"{', '.join(wrong)} cannot be used with hmac_secret; "
                    "use HS256, HS384 or HS512",
                )
        else:
            wrong = [a for a in self.algorithms if a in HMAC_ALGORITHMS]
            if wrong:
                raise InvalidSettingError(
                    "algorithms",
                    f"{', '.join(wrong)} must not be used with a public key "
                    "(anyone holding the public key could sign); use RS256, ES256, ...",
                )
        if self.jwks_url is not None:
            url = urlsplit(self.jwks_url) if isinstance(self.jwks_url, str) else None
            if url is None or url.scheme not in ("https", "http") or not url.hostname:
                raise InvalidSettingError("jwks_url", f"{self.jwks_url!r} is not an http(s) URL")
            if url.scheme == "http" and not is_loopback_host(url.hostname):
                raise InvalidSettingError(
                    "jwks_url", "must be https:// (http:// is allowed only to loopback)"
                )
        if not isinstance(self.caller_claim, str) or not self.caller_claim:
            raise InvalidSettingError("caller_claim", "must be a claim name such as 'sub'")


class _RefreshFailed(Exception):
    """A JWKS refresh that gave no usable key: ``kind`` for the metric, ``detail`` to log."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(kind, detail)
        self.kind = kind
        self.detail = detail


@functools.cache
def _failed_refresh_counter() -> Any:
    """The OpenTelemetry counter of failed JWKS refreshes, or None without the API."""
    try:
        from opentelemetry import metrics
    except ImportError:  # the otel extra is optional
        return None
    from gemini_tokens import __version__

    return metrics.get_meter("gemini_tokens", __version__).create_counter(
        "gemini_tokens.broker.jwks.failed_refreshes",
        unit="{refresh}",
        description="JWKS refreshes that gave no usable key (the last good keys are kept)",
    )


class KeySource:
    """The verification keys: a fixed key, or a JWKS fetched and cached.

    A refresh that gives no usable key (the identity provider unreachable, an error
    status, a document that is not a JWKS, a set with no key PyJWT can use, ``{"keys":
    []}``) keeps the last good set, logs a WARNING and counts it in `failed_refreshes` (and
    the ``gemini_tokens.broker.jwks.failed_refreshes`` metric): anyone can make the broker
    refresh (a token with a made-up ``kid``), so a bad answer must not lock everyone out.

    Attributes:
        fetches: How many times the JWKS was fetched (for tests and logs).
        failed_refreshes: How many of those fetches gave no usable key.
    """

    def __init__(self, settings: JWTSettings, *, clock: Callable[[], float] = time.monotonic):
        self._settings = settings
        self._clock = clock
        self._static: Any = None
        #: kid -> (key, the algorithm the JWK declares, if it declares one)
        self._keys: dict[str | None, tuple[Any, str | None]] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0
        self.failed_refreshes = 0
        if settings.hmac_secret is not None:
            self._static = settings.hmac_secret
        elif settings.public_key_file is not None:
            self._static = _load_pem(settings.public_key_file)

    async def key_for(self, kid: str | None, alg: str) -> Any:
        """The key that should have signed a token with header ``kid`` and ``alg``.

        Raises:
            JWTError: no such key (after at most one fetch a minute).
        """
        if self._static is not None:
            return self._static
        now = self._clock()
        settings = self._settings
        stale = self._fetched_at is None or now - self._fetched_at >= settings.jwks_cache_seconds
        key = self._lookup(kid, alg)
        if key is not None and not stale:
            return key
        if self._may_fetch(now):
            async with self._lock:
                # Another request may have fetched while this one waited.
                if self._may_fetch(self._clock()):
                    await self._fetch()
            key = self._lookup(kid, alg)
        if key is None:
            raise JWTError("the token's signing key is unknown")
        return key

    def _may_fetch(self, now: float) -> bool:
        last = self._attempted_at
        return last is None or now - last >= self._settings.jwks_min_refresh_seconds

    def _lookup(self, kid: str | None, alg: str) -> Any:
        found: tuple[Any, str | None] | None
        if kid is None:
            # A token without kid: only when the set has a single key.
            if len(self._keys) != 1:
                return None
            (found,) = self._keys.values()
        else:
            found = self._keys.get(kid)
        if found is None:
            return None
        key, declared = found
        # A key published for one algorithm is not used with another.
        if declared is not None and declared != alg:
            return None
        return key

    async def _fetch(self) -> None:
        url = self._settings.jwks_url
        assert url is not None
        self._attempted_at = self._clock()
        self.fetches += 1
        try:
            keys = await self._download(url)
        except _RefreshFailed as failed:
            # Keep the keys we had: the identity provider being down, or answering
            # nonsense, must not lock out every signed-in user at once.
            self.failed_refreshes += 1
            logger.warning(
                "jwt: the JWKS from %s gave no usable key (%s); keeping the %d signing "
                "key(s) fetched before",
                url,
                failed.detail,
                len(self._keys),
            )
            counter = _failed_refresh_counter()
            if counter is not None:
                counter.add(1, {"error.type": failed.kind})
            return
        self._keys = keys
        self._fetched_at = self._clock()
        logger.info("jwt: fetched %d signing keys from %s", len(keys), url)

    async def _download(self, url: str) -> dict[str | None, tuple[Any, str | None]]:
        """The usable keys of the JWKS at ``url``, by kid.

        Raises:
            _RefreshFailed: unreachable, not a 200, not a JWKS, or no usable key in it.
        """
        import aiohttp
        import jwt

        try:
            timeout = aiohttp.ClientTimeout(total=JWKS_TIMEOUT)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, allow_redirects=False) as response,
            ):
                if response.status != 200:
                    raise _RefreshFailed("http_status", f"HTTP {response.status}")
                raw = await response.content.read(MAX_JWKS_BYTES + 1)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _RefreshFailed("unreachable", str(exc) or type(exc).__name__) from None
        if len(raw) > MAX_JWKS_BYTES:
            raise _RefreshFailed("invalid", "the document is over 1 MiB")
        try:
            document = json.loads(raw)
        except (ValueError, RecursionError):
            raise _RefreshFailed("invalid", "not JSON") from None
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise _RefreshFailed("invalid", 'not a JWKS (no "keys" list)')
        keys: dict[str | None, tuple[Any, str | None]] = {}
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            if entry.get("kty") == "oct":
                continue  # a symmetric key in a public set is never trusted
            try:
                jwk = jwt.PyJWK.from_dict(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue  # an algorithm or curve PyJWT cannot use: skip that key
            declared = entry.get("alg")
            keys[entry.get("kid")] = (jwk.key, declared if isinstance(declared, str) else None)
        if not keys:
            raise _RefreshFailed("no_usable_key", f"none of its {len(entries)} key(s) is usable")
        return keys

    async def check(self) -> bool:
        """Whether keys are at hand (fetching the JWKS when none are): for readiness."""
        if self._static is not None:
            return True
        if not self._keys and self._may_fetch(self._clock()):
            async with self._lock:
                await self._fetch()
        return bool(self._keys)


def _load_pem(path: str) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise ConfigurationError(
            f"public_key_file: cannot read {path!r}: {exc.strerror or exc}"
        ) from None
    try:
        return load_pem_public_key(data)
    except ValueError:
        raise ConfigurationError(
            f"public_key_file: {path!r} is not a PEM public key (-----BEGIN PUBLIC KEY-----)"
        ) from None


class JWTAuthorizer:
    """An ``authorize`` hook: the caller named by a verified bearer JWT.

    Args:
        settings: `JWTSettings`.

    Raises ``Denied(401, ...)`` (for the broker to answer) for a missing, malformed,
    expired, wrongly signed, wrong-issuer or wrong-audience token, or one with an
    algorithm not allowed or an unknown key.
    """

    def __init__(self, settings: JWTSettings) -> None:
        try:
            import jwt  # noqa: F401
        except ImportError:  # pragma: no cover - the serve extra installs it
            raise ConfigurationError(
                "JWT verification needs PyJWT: pip install 'gemini-tokens[jwt]'"
            ) from None
        self.settings = settings
        self.keys = KeySource(settings)

    def __repr__(self) -> str:
        return f"JWTAuthorizer(issuer={self.settings.issuer!r})"

    async def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid token.

        Raises:
            JWTError: why it is not valid (a fixed message).
        """
        import jwt

        settings = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise JWTError("the bearer token is not a JWT") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in settings.algorithms:
            raise JWTError("the token's algorithm is not allowed")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise JWTError("the token's key id is invalid")
        key = await self.keys.key_for(kid, alg)
        required = ["exp", "iss", "aud", settings.caller_claim]
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],  # one of the allow-list, and the key's own
                audience=list(settings.audience),
                issuer=settings.issuer,
                leeway=settings.leeway_seconds,
                options={"require": required, "verify_signature": True},
            )
        except jwt.ExpiredSignatureError:
            raise JWTError("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise JWTError("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise JWTError("the token is not for this service (audience)") from None
        except jwt.InvalidIssuerError:
            raise JWTError("the token is from another issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise JWTError(f"the token has no {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise JWTError("the token's signature is invalid") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise JWTError("the token is invalid") from None
        return claims

    def caller_from(self, claims: Mapping[str, Any]) -> Caller:
        """The `Caller` the claims name."""
        from gemini_tokens.broker._types import Caller

        settings = self.settings
        subject = claims.get(settings.caller_claim)
        if isinstance(subject, bool) or not isinstance(subject, (str, int)) or subject == "":
            raise JWTError(f"the token's {settings.caller_claim!r} claim is not an id")
        attributes = {name: claims[name] for name in settings.attribute_claims if name in claims}
        return Caller(id=str(subject), attributes=attributes)

    async def __call__(self, request: BrokerRequest) -> Caller:
        from gemini_tokens.broker._types import Denied

        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Denied(401, "send Authorization: Bearer <your sign-in JWT>")
        if len(token) > MAX_TOKEN_CHARS:
            raise Denied(401, "the bearer token is too long")
        try:
            return self.caller_from(await self.verify(token))
        except JWTError as exc:
            raise Denied(401, str(exc)) from None
