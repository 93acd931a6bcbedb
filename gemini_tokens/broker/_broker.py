"""`TokenBroker`: the framework-neutral decision, request in, answer out.

`TokenBroker.handle` is the only place that decides; the adapters (`ASGIApp`, `WSGIApp`,
`gemini_tokens.broker.aiohttp`, `gemini_tokens.broker.fastapi`) only translate requests and
answers, and import this module, never the other way round. The token endpoint's steps:

origin (403) -> method (405) -> body shape (413, 415, 400) -> ``authorize`` (401, 403) ->
policy -> client choices (400) -> rate limits (429, 503) -> mint (200, 503, 500) -> audit.

With renewal on (`_session`), a ``{"renew": "<session>"}`` body takes, after ``authorize`` and
the policy: session check and cap (403) -> renewal limits (429, 503) -> mint -> ``renewed``.
With minute budgets or suspensions (`_budget`), the suspension (403) and the budgets (429,
or a token cut to the minutes left) are checked and charged in the limits' round trips.
``<path>/client.js`` serves the browser helper (`_static`); ``<path>/usage`` a caller's own
minutes left, with budgets or suspensions on.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import attrs

from gemini_tokens import (
    APIConnectionError,
    APIError,
    AsyncClient,
    Client,
    ConfigurationError,
    RateLimitError,
    ServerError,
    ValidationError,
)
from gemini_tokens.broker._audit import (
    DEFAULT_AUDIT_TIMEOUT,
    AuditEvent,
    deliver,
    iso_millis,
    log_audit_event,
    token_id,
)
from gemini_tokens.broker._body import BODY_KEYS, parse_body
from gemini_tokens.broker._budget import Budget, Suspension, Usage, minutes_between
from gemini_tokens.broker._cors import Origins
from gemini_tokens.broker._http import UNAVAILABLE_RETRY_AFTER, Refusal, error_body, json_body
from gemini_tokens.broker._limiter import Limiter
from gemini_tokens.broker._openapi import openapi_document
from gemini_tokens.broker._policy import Policy, check_choices
from gemini_tokens.broker._sealed import SealedBytes
from gemini_tokens.broker._session import Renewal
from gemini_tokens.broker._static import CLIENT_JS_PATH, client_js_route
from gemini_tokens.broker._telemetry import observe, record_audit_lost, record_minutes
from gemini_tokens.broker._types import BrokerRequest, BrokerResponse, Caller, Denied

if TYPE_CHECKING:
    from gemini_tokens import EphemeralToken

__all__ = ["AuditSink", "Authorize", "PolicySource", "TokenBroker"]

logger = logging.getLogger("gemini_tokens.broker")

Authorize = Callable[[BrokerRequest], Caller | Awaitable[Caller]]
PolicySource = Policy | Callable[[Caller], Policy | Awaitable[Policy]]
AuditSink = Callable[[AuditEvent], Awaitable[None] | None]
_Route = Callable[[BrokerRequest], Awaitable[BrokerResponse]]
_T = TypeVar("_T")

_GENERIC_500 = "the token broker failed; this is not your fault, try again later"
_JSON_HEADERS = (
    ("Content-Type", "application/json"),
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
)


#: The route below the token path that answers a caller's own usage.
USAGE_PATH = "/usage"


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


async def _call_hook(
    hook: Callable[..., Any], args: tuple[Any, ...], returns: type[_T], step: str, name: str
) -> _T:
    """``hook(*args)``, awaited if need be, as a ``returns``; a `Refusal` for ``step`` if not.

    `Denied` becomes its 401 or 403; anything else raised or returned is the server's
    fault: logged, and a 500 whose reason is ``<step>_failed``.
    """
    try:
        result = hook(*args)
        if inspect.isawaitable(result):
            result = await result
    except Denied as denied:
        reason = "unauthenticated" if denied.status == 401 else "forbidden"
        raise Refusal(denied.status, "denied", reason, denied.message) from None
    except Exception:
        logger.exception("token broker: %s raised", name)
        raise Refusal(500, "error", f"{step}_failed", _GENERIC_500) from None
    if not isinstance(result, returns):
        logger.error(
            "token broker: %s returned %s, not a %s (raise Denied to refuse)",
            name,
            type(result).__name__,
            returns.__name__,
        )
        raise Refusal(500, "error", f"{step}_failed", _GENERIC_500)
    return result


@attrs.define
class _Decision:
    """What is known so far about one request, for its audit event."""

    request: BrokerRequest
    started: float
    time: dt.datetime
    caller: Caller | None = None
    policy: Policy | None = None
    outcome: str = "minted"
    session: str | None = attrs.field(default=None, repr=False)
    charged_minutes: int | None = None
    #: The tightest budget after the charge: (minutes left, when it resets).
    budget: tuple[int, dt.datetime] | None = None


def _answer_body(
    token: EphemeralToken, session: str | None, budget: tuple[int, dt.datetime] | None
) -> SealedBytes | str:
    """The 200 answer's body, sealed; or, if it cannot be made, the error's type name.

    The body holds the token's name (and the session): it is built in this frame, which
    ends before anything can fail, and an error here is caught here. An error tracker
    records the locals of the frames an exception passes through; none of them holds it.
    """
    now = dt.datetime.now(dt.timezone.utc)
    try:
        body = {**token.to_dict(), "liveUrl": token.live_url(), "serverTime": iso_millis(now)}
        if session is not None:
            body["session"] = session
        if budget is not None:
            left, resets = budget
            body["budget"] = {"remainingMinutes": left, "resetsAt": iso_millis(resets)}
        return SealedBytes(json_body(body))
    except Exception as exc:
        return type(exc).__name__


class TokenBroker:
    """Hands out ephemeral tokens: who may get one, locked to what, how often, recorded.

    Args:
        authorize: ``(BrokerRequest) -> Caller``, sync or async; raises `Denied` (401 or
            403) to refuse. A sync hook runs in a worker thread (it may block on a database).
        policy: A `Policy`, or ``(Caller) -> Policy``, sync or async (e.g. per plan);
            a sync one runs on the event loop, so it should not block.
        rate_limits: Limits per caller, e.g. ``["5/minute", "100/day"]``.
        global_rate_limits: Limits for all callers together (protects the key's quota).
        storage_uri: ``"memory://"`` (one process) or ``"redis://host:6379/0"`` (replicas).
        allowed_origins: Origins whose pages may call the broker cross-origin. A page on
            the broker's own host may always call it.
        audit: ``(AuditEvent) -> None``, sync or async; default: one log line on
            ``gemini_tokens.audit``. A sync sink runs in a thread of its own (it may block).
        audit_timeout: How long an answer waits for the audit sink, in seconds (default
            5). Past it the event is given up (an async sink is cancelled), logged at
            WARNING and counted in ``gemini_tokens.broker.audit.lost``: a hanging sink
            never holds a token already minted.
        client: An `AsyncClient`, which stays yours to close. Its connection pool belongs to
            the event loop it is first used on: the app's loop, or a `WSGIApp`'s own. Not a
            sync `Client` (it runs on a loop of its own). Default: one made from the
            environment (``GEMINI_API_KEY``...), which the broker also closes.
        on_limiter_error: ``"deny"`` (default): answer 503 when the limiter's storage is
            unreachable; ``"allow"``: mint anyway (and log a warning).
        renewal: Let conversations outlast a token: answers carry a signed ``session`` and
            ``POST {"renew": session}`` mints the conversation's next token (``uses=1``, never
            past its start plus ``Policy.max_session_minutes``). See docs/live-sessions.md.
        secret: The key that signs sessions (at least 32 bytes; the same on every replica).
            Default: ``GEMINI_TOKENS_BROKER_SECRET``. Required when ``renewal`` is on.
        renewal_rate_limits: Limits per caller on renewals, apart from ``rate_limits``
            (the global limits count renewals too).
        live_minutes: Budgets of Live minutes per caller, e.g. ``["60/day", "600/month"]``,
            on the rate limits' storage. Every token (renewals too) is charged the minutes
            from now to its ``expireTime``, rounded up; a token is cut to the minutes left.
            See docs/budgets.md.
        global_live_minutes: Budgets of Live minutes for all callers together.
        suspensions: Whether requests check `suspend`'s cut-offs (default: when a budget
            is set). With Redis it adds one command, not a round trip.

    Raises:
        ConfigurationError: an unparsable limit or budget, an unknown storage scheme, a bad origin,
            a hook that is not callable, a ``client`` that is not an `AsyncClient`, no API
            key, renewal without a secret, or an ``audit_timeout`` that is not a positive
            number.
        ValidationError: a policy that ``create()`` would refuse.
    """

    def __init__(
        self,
        *,
        authorize: Authorize,
        policy: PolicySource,
        rate_limits: Iterable[str] | str | None = (),
        global_rate_limits: Iterable[str] | str | None = (),
        storage_uri: str = "memory://",
        allowed_origins: Iterable[str] | str | None = (),
        audit: AuditSink | None = None,
        client: AsyncClient | None = None,
        on_limiter_error: Literal["deny", "allow"] = "deny",
        renewal: bool = False,
        secret: str | bytes | None = None,
        renewal_rate_limits: Iterable[str] | str | None = (),
        audit_timeout: float = DEFAULT_AUDIT_TIMEOUT,
        live_minutes: Iterable[str] | str | None = (),
        global_live_minutes: Iterable[str] | str | None = (),
        suspensions: bool | None = None,
    ) -> None:
        if not callable(authorize):
            raise ConfigurationError("authorize: must be a function (request) -> Caller")
        if not isinstance(policy, Policy) and not callable(policy):
            raise ConfigurationError("policy: must be a Policy or a function (caller) -> Policy")
        if audit is not None and not callable(audit):
            raise ConfigurationError("audit: must be a function (event) -> None, or None")
        if (
            isinstance(audit_timeout, bool)
            or not isinstance(audit_timeout, (int, float))
            or not 0 < audit_timeout < math.inf
        ):
            raise ConfigurationError(
                f"audit_timeout: must be a positive number of seconds, not {audit_timeout!r}"
            )
        if on_limiter_error not in ("deny", "allow"):
            raise ConfigurationError(
                f"on_limiter_error: must be 'deny' or 'allow', not {on_limiter_error!r}"
            )
        self._authorize = authorize
        self._authorize_async = _is_async(authorize)
        self._policy = policy
        self._audit: AuditSink = audit if audit is not None else log_audit_event
        self._audit_timeout = float(audit_timeout)
        self._limiter = Limiter(rate_limits, global_rate_limits, storage_uri)
        self._origins = Origins(allowed_origins)
        self._renewal = Renewal(secret, renewal_rate_limits, self._limiter) if renewal else None
        if suspensions is not None and not isinstance(suspensions, bool):
            raise ConfigurationError("suspensions: must be True, False or None")
        self._budget = Budget(
            live_minutes, global_live_minutes, self._limiter, suspensions=bool(suspensions)
        )
        if suspensions is False and self._budget.enabled:
            raise ConfigurationError("suspensions: cannot be False with live_minutes set")
        self._on_limiter_error = on_limiter_error
        if isinstance(client, Client):
            raise ConfigurationError(
                "client: must be a gemini_tokens.AsyncClient, not the sync Client (the broker "
                "decides on an event loop; WSGIApp brings its own)"
            )
        if client is not None and not isinstance(client, AsyncClient):
            raise ConfigurationError("client: must be a gemini_tokens.AsyncClient, or None")
        self._owns_client = client is None
        # Made now, so that a missing API key fails at startup.
        self._client: AsyncClient | None = AsyncClient() if client is None else client
        #: Where the broker's own client was last used: (event loop, process id).
        self._client_home: tuple[asyncio.AbstractEventLoop, int] | None = None
        #: Sub-routes below the token endpoint, by path ("" is the endpoint itself).
        self._routes: dict[str, _Route] = {
            "": self._token_endpoint,
            CLIENT_JS_PATH: client_js_route(self._origins),
        }
        if self._budget.checks_suspensions:
            self._routes[USAGE_PATH] = self._usage_endpoint
        #: Top-level body keys the token endpoint accepts.
        self._body_keys = BODY_KEYS | ({"renew"} if renewal else set())

    def __repr__(self) -> str:
        kind = "a policy function" if not isinstance(self._policy, Policy) else "a Policy"
        return f"TokenBroker({kind}, storage={self._limiter.kind})"

    # --- lifetime ---------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the client the broker made (a given client is its giver's to close).

        The broker stays usable: a later request makes a new client.
        """
        await self._limiter.aclose()
        client, owned = self._client, self._owns_client
        if owned and client is not None:
            self._client = self._client_home = None
            await client.close()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """An app lifespan that closes the broker at shutdown: ``Starlette(lifespan=...)``."""
        try:
            yield
        finally:
            await self.aclose()

    def _current_client(self) -> AsyncClient:
        """The client to mint with, on the running loop.

        A given client as given. Our own is made again on a new loop of this process (an
        app restarted without its lifespan closing the broker, a loop closed without
        shutting down) rather than fail every call; in a forked child it makes a pool of its
        own by itself.
        """
        client = self._client
        if client is not None and not self._owns_client:
            return client
        loop, home = asyncio.get_running_loop(), self._client_home
        if client is not None and home is not None and home[0] is loop:
            return client  # the usual case
        pid = os.getpid()
        if client is None or (home is not None and home[1] == pid):
            if home is not None and not home[0].is_closed():
                logger.warning(
                    "token broker: used on a new event loop without aclose() on the old one; "
                    "close the broker in your app's lifespan (broker.lifespan)"
                )
            client = self._client = AsyncClient()
        self._client_home = (loop, pid)
        return client

    # --- what the broker was given, for the service and the OpenAPI document ----------

    @property
    def authorize(self) -> Authorize:
        """The ``authorize`` hook the broker was given (e.g. a `JWTAuthorizer`)."""
        return self._authorize

    @property
    def policy(self) -> PolicySource:
        """The policy the broker was given: a `Policy`, or a function of the `Caller`."""
        return self._policy

    @property
    def renewal_enabled(self) -> bool:
        """Whether conversations may be renewed (``renewal=True``)."""
        return self._renewal is not None

    @property
    def live_minutes(self) -> tuple[str, ...]:
        """The per-caller Live-minute budgets, as `limits` writes them (``60 per 1 day``)."""
        return tuple(str(item) for item in self._budget.caller_items)

    @property
    def global_live_minutes(self) -> tuple[str, ...]:
        """The Live-minute budgets of all callers together (``20000 per 1 day``)."""
        return tuple(str(item) for item in self._budget.global_items)

    @property
    def checks_suspensions(self) -> bool:
        """Whether requests check suspensions (with a budget, or ``suspensions=True``):
        then ``<path>/usage`` answers too."""
        return self._budget.checks_suspensions

    async def check_storage(self) -> bool:
        """Whether the rate limits' storage answers, for a readiness probe (``/readyz``).

        Memory always does; Redis gets a PING, bounded by a short timeout. Never raises.
        """
        return await self._limiter.check()

    # --- budgets and cut-offs ---------------------------------------------------------

    async def suspend(
        self,
        caller_id: str,
        duration: dt.timedelta | float | None = None,
        reason: str = "your access was suspended",
    ) -> Suspension:
        """Refuse ``caller_id``'s next token and next renewal on every replica (403,
        reason ``suspended``, ``reason`` shown to the page), until ``duration`` has passed
        (a timedelta or seconds) or `reinstate`. Kept in the rate limits' storage.

        Tokens already handed out run to their ``expireTime``: the service cannot revoke
        a token (see docs/budgets.md).

        Raises:
            ValueError: an empty ``caller_id`` or ``reason``, a duration not above 0.
            ConfigurationError: this broker does not check suspensions.
            Exception: the storage's own error when it cannot be reached (redis-py's).
        """
        self._check_suspensions()
        return await self._budget.suspend(caller_id, duration, reason)

    async def reinstate(self, caller_id: str) -> bool:
        """End ``caller_id``'s suspension everywhere; whether there was one.

        Raises:
            ValueError: an empty ``caller_id``.
            ConfigurationError: this broker does not check suspensions.
        """
        self._check_suspensions()
        return await self._budget.reinstate(caller_id)

    async def usage(self, caller_id: str) -> Usage:
        """``caller_id``'s remaining minutes in each budget, and its suspension.

        Raises:
            ValueError: an empty ``caller_id``.
            Exception: the storage's own error when it cannot be reached (redis-py's).
        """
        return await self._budget.usage(caller_id)

    def _check_suspensions(self) -> None:
        if not self._budget.checks_suspensions:
            raise ConfigurationError(
                "suspensions: this broker does not check suspensions; pass suspensions=True "
                "(or live_minutes) to every replica's TokenBroker"
            )

    async def _usage_endpoint(self, request: BrokerRequest) -> BrokerResponse:
        """``GET <path>/usage``: the signed-in caller's own minutes left and suspension.

        No CORS preflight is answered for it: a page on another origin reads ``budget`` from
        its token answers instead."""
        headers = (*_JSON_HEADERS, *self._origins.response_headers(request))
        if request.method != "GET":
            return BrokerResponse(
                status=405,
                headers=(*headers, ("Allow", "GET")),
                body=error_body(405, f"method {request.method} is not allowed; use GET"),
            )
        try:
            if not self._origins.permits(request):
                raise Refusal(403, "denied", "origin_not_allowed", "this origin may not ask")
            caller = await self._call_authorize(request)
            usage = await self._budget.usage(caller.id)
        except Refusal as refusal:
            return BrokerResponse(
                status=refusal.status,
                headers=headers,
                body=error_body(refusal.status, refusal.message),
            )
        except Exception:
            logger.warning("token broker: reading a caller's usage failed", exc_info=True)
            return BrokerResponse(
                status=503,
                headers=(*headers, ("Retry-After", str(UNAVAILABLE_RETRY_AFTER))),
                body=error_body(503, "the token service is unavailable; try again later"),
            )
        return BrokerResponse(status=200, headers=headers, body=json_body(usage.to_dict()))

    @property
    def subpaths(self) -> tuple[str, ...]:
        """The routes below the token path: ``""`` (the token endpoint) and ``"/client.js"``
        (the browser helper). An adapter routed to a single path uses them to tell which."""
        return tuple(self._routes)

    def openapi(self, path: str = "/token") -> dict[str, Any]:
        """The HTTP contract as an OpenAPI 3.1 document, with the endpoint at ``path``."""
        return openapi_document(
            self._policy,
            self.renewal_enabled,
            path,
            self.live_minutes + self.global_live_minutes,
            self.checks_suspensions,
        )

    # --- the decision -----------------------------------------------------------------

    async def handle(self, request: BrokerRequest) -> BrokerResponse:
        """Answer one request. Every adapter calls this and only this.

        ``request.subpath`` picks the route: ``""`` (or ``"/"``) is the token endpoint;
        anything not in `subpaths` is a 404.
        """
        subpath = request.subpath.rstrip("/")
        route = self._routes.get(subpath)
        if route is None:
            return BrokerResponse(
                status=404,
                headers=(*_JSON_HEADERS, *self._origins.response_headers(request)),
                body=error_body(404, "no such route"),
            )
        return await route(request)

    async def _token_endpoint(self, request: BrokerRequest) -> BrokerResponse:
        if request.method == "OPTIONS":
            status, headers = self._origins.preflight(request)
            return BrokerResponse(status=status, headers=tuple(headers))
        decision = _Decision(
            request=request,
            started=time.perf_counter(),
            time=dt.datetime.now(dt.timezone.utc),
        )
        try:
            token = await self._decide(request, decision)
        except Refusal as refusal:
            return await self._refuse(decision, refusal)
        except Exception:
            logger.exception("token broker: unexpected failure while deciding")
            return await self._refuse(decision, Refusal(500, "error", "internal", _GENERIC_500))
        return await self._answer(decision, token)

    async def _decide(self, request: BrokerRequest, decision: _Decision) -> EphemeralToken:
        """The steps, in order; each raises a `Refusal` to stop."""
        if request.method != "POST":
            raise Refusal(
                405,
                "invalid",
                "method_not_allowed",
                f"method {request.method} is not allowed; use POST",
                headers=(("Allow", "POST, OPTIONS"),),
            )
        if not self._origins.permits(request):
            raise Refusal(403, "denied", "origin_not_allowed", "this origin may not get tokens")
        body = parse_body(request, self._body_keys)  # 413, 415, 400: before authorize
        renewal = self._renewal
        if renewal is not None and "renew" in body.extra and body.config is not None:
            raise Refusal(
                400,
                "invalid",
                "invalid_argument",
                "config: may not be given with renew (a renewal keeps the conversation's choices)",
            )
        caller = decision.caller = await self._call_authorize(request)
        policy = decision.policy = await self._resolve_policy(caller)
        if renewal is not None and "renew" in body.extra:
            conversation = renewal.verify(caller, body.extra["renew"])
            options = renewal.next_times(policy, conversation, conversation.choices)
            if self._budget.checks_suspensions:
                charged = await self._charge(caller, decision, policy, options, renewal.limits)
                options = options if charged is None else charged
            else:
                await renewal.hit(caller, self._on_limiter_error)
            decision.outcome, decision.session = "renewed", body.extra["renew"]
            return await self._mint(policy, conversation.choices, options)
        try:
            choices = check_choices(policy, body.config)
        except ValidationError as exc:
            raise Refusal(400, "invalid", "invalid_argument", str(exc)) from None
        if renewal is None:
            times = None
        else:
            start = renewal.now().replace(microsecond=0)
            times = renewal.first_times(policy, start)
        if self._budget.checks_suspensions:
            times = await self._charge(caller, decision, policy, times)
        else:
            await self._limiter.enforce(caller.id, self._on_limiter_error)
        if renewal is not None:
            decision.session = renewal.sign(caller, policy, choices, start)
        return await self._mint(policy, choices, times)

    async def _charge(
        self,
        caller: Caller,
        decision: _Decision,
        policy: Policy,
        times: dict[str, Any] | None,
        renewal_limits: Any = None,
    ) -> dict[str, Any] | None:
        """The limits, the suspension and the budgets, in the limits' round trips; the
        token's times (None: the policy's minutes), cut to the minutes left.

        Raises:
            Refusal: 403 ``suspended``, 429 (a limit, ``budget_exhausted``), 503.
        """
        now = None if times is None else dt.datetime.now(dt.timezone.utc)
        if now is None or times is None:  # the policy's own lifetime, from the mint's now
            wanted = math.ceil(policy.expire_minutes - 1e-9) if self._budget.enabled else 0
        else:
            wanted = minutes_between(now, times["expire_time"])
        reservation = self._budget.reservation(caller.id, wanted)
        if renewal_limits is None:
            await self._limiter.enforce(caller.id, self._on_limiter_error, along=reservation)
        else:
            await self._limiter.enforce(
                caller.id,
                self._on_limiter_error,
                renewal_limits,
                key="renewal",
                what="renewals",
                along=reservation,
            )
        granted = reservation.granted
        if granted is None or not self._budget.enabled:
            return times  # (the storage down and on_limiter_error="allow": not charged)
        decision.charged_minutes, decision.budget = granted, reservation.remaining
        if granted >= wanted:
            return times
        if now is None or times is None:  # cut to what is left
            return {
                "expire_minutes": granted,
                "new_session_expire_minutes": min(policy.new_session_expire_minutes, granted),
            }
        end = now + dt.timedelta(minutes=granted)
        return {
            **times,
            "expire_time": end,
            "new_session_expire_time": min(times["new_session_expire_time"], end),
        }

    async def _call_authorize(self, request: BrokerRequest) -> Caller:
        call = self._authorize
        if not self._authorize_async:  # a sync hook may block (a database): off the loop
            return await _call_hook(
                asyncio.to_thread, (call, request), Caller, "authorize", "the authorize hook"
            )
        return await _call_hook(call, (request,), Caller, "authorize", "the authorize hook")

    async def _resolve_policy(self, caller: Caller) -> Policy:
        source = self._policy
        if isinstance(source, Policy):
            return source
        return await _call_hook(source, (caller,), Policy, "policy", "the policy function")

    async def _mint(
        self,
        policy: Policy,
        choices: Mapping[str, Any],
        overrides: Mapping[str, Any] | None = None,
    ) -> EphemeralToken:
        """Mint one token under ``policy`` with the client's ``choices``; `Refusal` on failure.

        ``overrides`` replace ``create()`` options of the policy's (renewal's times, uses).

        The service's own text never reaches the caller: a busy or unreachable service is a
        503 with ``Retry-After``; a refusal that is the server's fault (a bad key, a policy the
        service rejects) is a 500 with a generic message and an ERROR log.
        """
        options = policy.create_options({**policy.config, **choices})
        if overrides:
            options.update(overrides)
        try:
            return await self._current_client().create(**options)
        except (RateLimitError, ServerError, APIConnectionError) as exc:
            retry_after = getattr(exc, "retry_after", None)
            wait = max(1, math.ceil(retry_after)) if retry_after else UNAVAILABLE_RETRY_AFTER
            reason = "upstream_limited" if isinstance(exc, RateLimitError) else "upstream_down"
            logger.warning("token broker: the token service failed: %s", exc)
            raise Refusal(
                503,
                "upstream_error",
                reason,
                "the token service is unavailable; try again later",
                retry_after=wait,
            ) from None
        except (APIError, ValidationError, ConfigurationError) as exc:
            logger.error("token broker: the token service refused to mint: %s", exc)
            raise Refusal(500, "upstream_error", "upstream_refused", _GENERIC_500) from None

    # --- answers ----------------------------------------------------------------------

    async def _answer(self, decision: _Decision, token: EphemeralToken) -> BrokerResponse:
        content = _answer_body(token, decision.session, decision.budget)
        if isinstance(content, str):  # minted, but no answer can carry it: lost
            logger.error("token broker: the answer could not be made (%s)", content)
            return await self._refuse(
                decision, Refusal(500, "error", "answer_failed", _GENERIC_500)
            )
        if decision.budget is not None:
            record_minutes(decision.charged_minutes or 0, decision.outcome)
        response = BrokerResponse(
            status=200,
            headers=(*_JSON_HEADERS, *self._origins.response_headers(decision.request)),
            body=content,
        )
        await self._emit(
            decision,
            outcome=decision.outcome,
            reason="ok",
            status=200,
            token_id=token_id(token.name),
            uses=token.uses,
            expire_time=token.expire_time,
            new_session_expire_time=token.new_session_expire_time,
            locked_fields=token.locked_fields,
            charged_minutes=decision.charged_minutes,
        )
        return response

    async def _refuse(self, decision: _Decision, refusal: Refusal) -> BrokerResponse:
        headers = [*_JSON_HEADERS, *self._origins.response_headers(decision.request)]
        headers.extend(refusal.headers)
        if refusal.retry_after is not None:
            headers.append(("Retry-After", str(refusal.retry_after)))
        await self._emit(
            decision,
            outcome=refusal.outcome,
            reason=refusal.reason,
            status=refusal.status,
            detail=refusal.message,
        )
        return BrokerResponse(
            status=refusal.status,
            headers=tuple(headers),
            body=error_body(refusal.status, refusal.message),
        )

    async def _emit(self, decision: _Decision, **fields: Any) -> None:
        request = decision.request
        policy = decision.policy
        event = AuditEvent(
            time=decision.time,
            caller_id=decision.caller.id if decision.caller is not None else None,
            client_address=request.client_address,
            origin=request.origin,
            model=policy.model if policy is not None else None,
            latency_ms=(time.perf_counter() - decision.started) * 1000,
            **fields,
        )
        observe(event)  # OpenTelemetry, when installed
        lost = await deliver(self._audit, event, timeout=self._audit_timeout)
        if lost is not None:
            record_audit_lost(lost)
