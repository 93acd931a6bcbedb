"""JWT caller identity (`gemini_tokens.broker._jwt`), in process, against a local JWKS server.

The same refusals are checked end to end through ``gemini-tokens serve`` in test_serve.py;
here each rule is pinned down on its own, with a fake clock for the refresh limits.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
import pytest

from gemini_tokens import ConfigurationError
from gemini_tokens.broker import BrokerRequest, Caller, Denied, JWTAuthorizer, JWTError, JWTSettings
from gemini_tokens.serve._build import load_authorizer

from .jwks_server import (  # noqa: F401  (fixtures)
    AUDIENCE,
    ISSUER,
    IdentityProvider,
    JWKSServer,
    SigningKey,
    idp_fixture,
    jwks_fixture,
)

SECRET = "s" * 40


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def settings(jwks: JWKSServer | None = None, **overrides: Any) -> JWTSettings:
    options: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["RS256"]}
    if jwks is not None:
        options["jwks_url"] = jwks.url
    options.update(overrides)
    return JWTSettings(**options)


def authorizer(jwks: JWKSServer, clock: FakeClock | None = None, **overrides: Any) -> JWTAuthorizer:
    auth = JWTAuthorizer(settings(jwks, **overrides))
    if clock is not None:
        auth.keys._clock = clock
    return auth


def request(token: str | None, scheme: str = "Bearer") -> BrokerRequest:
    headers = {} if token is None else {"Authorization": f"{scheme} {token}"}
    return BrokerRequest(method="POST", path="/token", headers=headers)


async def refused(auth: JWTAuthorizer, token: str | None, **kwargs: Any) -> str:
    with pytest.raises(Denied) as info:
        await auth(request(token, **kwargs))
    assert info.value.status == 401
    if token:
        assert token not in info.value.message
        assert token not in str(info.value)
    return info.value.message


async def test_a_good_token_names_the_caller(jwks: JWKSServer, idp: IdentityProvider) -> None:
    auth = authorizer(jwks, attribute_claims=["plan"])
    caller = await auth(request(idp.token("alice", plan="pro")))
    assert caller == Caller(id="alice", attributes={"plan": "pro"})
    assert jwks.requests == 1
    await auth(request(idp.token("bob")))
    assert jwks.requests == 1  # cached


async def test_the_caller_comes_from_the_chosen_claim(
    jwks: JWKSServer, idp: IdentityProvider
) -> None:
    auth = authorizer(jwks, caller_claim="email")
    assert (await auth(request(idp.token("x", email="a@example.test")))).id == "a@example.test"
    assert "'email'" in await refused(auth, idp.token("x"))


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda idp: idp.token(exp=int(time.time()) - 120), "expired"),
        (lambda idp: idp.token(aud="someone-else"), "audience"),
        (lambda idp: idp.token(iss="https://evil.example.test/"), "issuer"),
        (lambda idp: idp.unsigned(), "algorithm is not allowed"),
        (lambda idp: idp.hs256_with_public_key(), "algorithm is not allowed"),
        (lambda idp: idp.token(key=SigningKey(), kid=idp.key.kid), "signature"),
        (lambda idp: idp.token(exp=None), "'exp'"),
        (lambda idp: idp.token(aud=None), "'aud'"),
        (lambda idp: idp.token(nbf=int(time.time()) + 600), "not valid yet"),
        (lambda idp: "not.a.jwt", "not a JWT"),
        (lambda idp: idp.token()[:-6] + "AAAAAA", "signature"),
    ],
    ids=[
        "expired",
        "wrong-audience",
        "wrong-issuer",
        "alg-none",
        "hs256-with-public-key",
        "wrong-key-same-kid",
        "no-exp",
        "no-aud",
        "not-yet-valid",
        "garbage",
        "tampered",
    ],
)
async def test_bad_tokens_are_refused_with_a_fixed_message(
    jwks: JWKSServer, idp: IdentityProvider, make: Any, expected: str
) -> None:
    auth = authorizer(jwks)
    assert expected in await refused(auth, make(idp))


async def test_the_leeway_tolerates_small_clock_skew(
    jwks: JWKSServer, idp: IdentityProvider
) -> None:
    auth = authorizer(jwks, leeway_seconds=30)
    assert (await auth(request(idp.token(exp=int(time.time()) - 10)))).id == "user-1"
    assert "expired" in await refused(auth, idp.token(exp=int(time.time()) - 60))


async def test_a_missing_or_non_bearer_header_is_refused(jwks: JWKSServer) -> None:
    auth = authorizer(jwks)
    assert "Bearer" in await refused(auth, None)
    assert "Bearer" in await refused(auth, "abc", scheme="Basic")
    assert "too long" in await refused(auth, "a" * 20000)


async def test_an_unknown_kid_refetches_once_then_not_again_within_a_minute(
    jwks: JWKSServer, idp: IdentityProvider
) -> None:
    clock = FakeClock()
    auth = authorizer(jwks, clock)
    await auth(request(idp.token()))
    assert jwks.requests == 1
    stranger = SigningKey()
    clock.now += 61
    assert "unknown" in await refused(auth, idp.token(key=stranger))
    assert jwks.requests == 2  # refreshed for the unknown kid
    for _ in range(20):
        assert "unknown" in await refused(auth, idp.token(key=stranger))
    assert jwks.requests == 2  # ... but not again within the minute
    # Known keys keep working meanwhile, without a fetch.
    assert (await auth(request(idp.token()))).id == "user-1"
    assert jwks.requests == 2


async def test_a_rotated_jwks_is_picked_up(jwks: JWKSServer, idp: IdentityProvider) -> None:
    clock = FakeClock()
    auth = authorizer(jwks, clock, algorithms=["RS256", "ES256"])
    old_key = idp.key
    await auth(request(idp.token()))
    new_key = SigningKey(kind="EC")
    jwks.rotate(new_key)
    clock.now += 61
    assert (await auth(request(idp.token("carol", key=new_key)))).id == "carol"
    assert jwks.requests == 2
    # The old key is gone from the set: its tokens no longer verify.
    assert "unknown" in await refused(auth, idp.token(key=old_key))


async def test_concurrent_unknown_kids_make_one_fetch(
    jwks: JWKSServer, idp: IdentityProvider
) -> None:
    auth = authorizer(jwks)
    stranger = SigningKey()
    results = await asyncio.gather(
        *(auth(request(idp.token(key=stranger))) for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, Denied) for r in results)
    assert jwks.requests == 1


async def test_the_jwks_being_down_keeps_the_keys_already_fetched(
    jwks: JWKSServer, idp: IdentityProvider
) -> None:
    clock = FakeClock()
    auth = authorizer(jwks, clock, jwks_cache_seconds=100)
    await auth(request(idp.token()))
    jwks.fail = True
    clock.now += 200  # the cache is stale: a fetch is tried, fails, the old keys stay
    assert (await auth(request(idp.token()))).id == "user-1"
    assert jwks.requests == 2
    assert await auth.keys.check()


async def test_no_jwks_at_all_is_not_ready(unused_tcp_port: int) -> None:
    auth = JWTAuthorizer(settings(jwks_url=f"http://127.0.0.1:{unused_tcp_port}/jwks.json"))
    assert not await auth.keys.check()
    with pytest.raises(JWTError, match="unknown"):
        await auth.verify(IdentityProvider().token())


async def test_a_pem_public_key(tmp_path: Any, idp: IdentityProvider) -> None:
    pem = tmp_path / "key.pem"
    pem.write_bytes(idp.key.public_pem)
    auth = JWTAuthorizer(settings(public_key_file=str(pem)))
    assert (await auth(request(idp.token()))).id == "user-1"
    assert "algorithm" in await refused(auth, idp.hs256_with_public_key())
    assert "signature" in await refused(auth, idp.token(key=SigningKey(), kid=idp.key.kid))
    assert await auth.keys.check()


async def test_an_hmac_secret() -> None:
    auth = JWTAuthorizer(settings(hmac_secret=SECRET, algorithms=["HS256"]))
    good = jwt.encode(IdentityProvider().claims("dave"), SECRET, algorithm="HS256")
    assert (await auth(request(good))).id == "dave"
    forged = jwt.encode(IdentityProvider().claims("eve"), "x" * 40, algorithm="HS256")
    assert "signature" in await refused(auth, forged)
    assert SECRET not in repr(auth.settings)


async def test_a_token_for_an_algorithm_the_key_does_not_declare_is_refused(
    jwks: JWKSServer, idp: IdentityProvider
) -> None:
    rsa = idp.key
    jwks.rotate(rsa)
    auth = authorizer(jwks, algorithms=["RS256", "PS256"])
    token = jwt.encode(idp.claims(), rsa.private, algorithm="PS256", headers={"kid": rsa.kid})
    assert "unknown" in await refused(auth, token)  # the JWK says alg RS256


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"algorithms": ["none"]}, "'none' is never allowed"),
        ({"algorithms": ["HS256"]}, "must not be used with a public key"),
        ({"algorithms": ["RS256", "HS512"]}, "HS512 must not be used"),
        ({"algorithms": []}, "non-empty"),
        ({"algorithms": ["RS999"]}, "not a signing algorithm"),
        ({"hmac_secret": SECRET, "algorithms": ["HS256"]}, "exactly one of"),
        ({"jwks_url": "http://idp.example.test/jwks"}, "https://"),
        ({"jwks_url": "ftp://x/jwks"}, "not an http(s) URL"),
        ({"issuer": ""}, "issuer"),
        ({"audience": []}, "audience"),
        ({"leeway_seconds": -1}, "leeway_seconds"),
        ({"caller_claim": ""}, "caller_claim"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(overrides: Any, message: str) -> None:
    options: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "algorithms": ["RS256"],
        "jwks_url": "https://idp.example.test/.well-known/jwks.json",
        **overrides,
    }
    with pytest.raises(ConfigurationError) as info:
        JWTSettings(**options)
    assert message in str(info.value)


def test_an_hmac_secret_must_be_long_and_only_with_hs() -> None:
    with pytest.raises(ConfigurationError, match="at least 32"):
        JWTSettings(issuer=ISSUER, audience=AUDIENCE, algorithms=["HS256"], hmac_secret="short")
    with pytest.raises(ConfigurationError, match="cannot be used with hmac_secret"):
        JWTSettings(issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256"], hmac_secret=SECRET)


def test_no_key_source_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="exactly one of"):
        JWTSettings(issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256"])


def test_a_bad_pem_file_is_refused(tmp_path: Any) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("hello")
    with pytest.raises(ConfigurationError, match="not a PEM public key"):
        JWTAuthorizer(settings(public_key_file=str(bad)))
    with pytest.raises(ConfigurationError, match="cannot read"):
        JWTAuthorizer(settings(public_key_file=str(tmp_path / "missing.pem")))


def test_load_authorizer() -> None:
    assert load_authorizer("os.path:join") is __import__("os").path.join
    for spec, message in [
        ("nocolon", "must be 'module:function'"),
        ("no_such_module_xyz:f", "cannot import"),
        ("os:no_such_thing", "has no attribute"),
        ("os:sep", "not callable"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            load_authorizer(spec)
