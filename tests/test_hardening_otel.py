"""The metric of review point #11: a JWKS refresh without a usable key is counted, by kind."""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs opentelemetry-sdk: pip install -e '.[test]'")

from .jwks_server import (  # noqa: F401  (fixtures)
    IdentityProvider,
    JWKSServer,
    SigningKey,
    idp_fixture,
    jwks_fixture,
)
from .test_otel import Telemetry, otel_fixture  # noqa: F401  (fixture)
from .test_serve_jwt import FakeClock, authorizer, refused, request


async def test_failed_jwks_refreshes_are_counted_by_kind(
    jwks: JWKSServer, idp: IdentityProvider, otel: Telemetry
) -> None:
    clock = FakeClock()
    auth = authorizer(jwks, clock)
    assert (await auth(request(idp.token()))).id == "user-1"
    for answer in [(200, b'{"keys": []}'), (500, b"down"), (200, b"garbage")]:
        jwks.answer = answer
        clock.now += 61
        assert "unknown" in await refused(auth, idp.token(key=SigningKey()))
    assert (await auth(request(idp.token()))).id == "user-1"
    points = otel.read()["gemini_tokens.broker.jwks.failed_refreshes"]
    counts = {p.attributes["error.type"]: p.value for p in points}
    assert counts == {"no_usable_key": 1, "http_status": 1, "invalid": 1}
    assert auth.keys.failed_refreshes == 3
