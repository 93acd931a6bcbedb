"""A local identity provider for the JWT tests: a JWKS served on 127.0.0.1, and its tokens.

`JWKSServer` runs an aiohttp server on its own loop in its own thread (so a ``serve``
subprocess and in-process tests reach it alike), serving ``/.well-known/jwks.json`` from
the keys it holds. `rotate` replaces the published keys; `requests` counts the fetches;
`fail` answers 503 and `answer` any status and body instead of the keys (an empty set,
garbage, a 500).
`IdentityProvider` makes key pairs and signs tokens, good ones and every kind of forgery.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .loop_server import LoopServer

__all__ = [
    "AUDIENCE",
    "ISSUER",
    "IdentityProvider",
    "JWKSServer",
    "SigningKey",
    "idp_fixture",
    "jwks_fixture",
]

ISSUER = "https://id.example.test/"
AUDIENCE = "gemini-tokens-broker"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SigningKey:
    """A private key with its ``kid``; ``jwk`` is its public half as a JWK."""

    def __init__(self, kind: str = "RSA", kid: str | None = None) -> None:
        self.kid = kid or secrets.token_hex(8)
        if kind == "RSA":
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.alg = "RS256"
            algorithm: Any = jwt.algorithms.RSAAlgorithm
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            self.alg = "ES256"
            algorithm = jwt.algorithms.ECAlgorithm
        self.jwk: dict[str, Any] = {
            **json.loads(algorithm.to_jwk(self.private.public_key())),
            "kid": self.kid,
            "use": "sig",
            "alg": self.alg,
        }

    @property
    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class IdentityProvider:
    """Signs tokens for ``ISSUER`` / ``AUDIENCE`` (overridable per token)."""

    def __init__(self, key: SigningKey | None = None) -> None:
        self.key = key or SigningKey()

    def claims(self, sub: str = "user-1", **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 300}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self,
        sub: str = "user-1",
        *,
        key: SigningKey | None = None,
        kid: str | None = None,
        **claims: Any,
    ) -> str:
        key = key or self.key
        return jwt.encode(
            self.claims(sub, **claims),
            key.private,
            algorithm=key.alg,
            headers={"kid": kid or key.kid},
        )

    def unsigned(self, sub: str = "user-1") -> str:
        """An ``alg: none`` token (no signature)."""
        header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": self.key.kid}).encode())
        payload = _b64(json.dumps(self.claims(sub)).encode())
        return f"{header}.{payload}."

    def hs256_with_public_key(self, sub: str = "user-1") -> str:
        """The classic forgery: HS256 "signed" with the public key's PEM as the secret."""
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": self.key.kid}).encode())
        payload = _b64(json.dumps(self.claims(sub)).encode())
        signing_input = f"{header}.{payload}".encode()
        mac = hmac.new(self.key.public_pem, signing_input, hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(mac)}"


class JWKSServer(LoopServer):
    """Serves ``{"keys": [...]}`` at ``url`` on 127.0.0.1 from its own thread."""

    def __init__(self, *keys: SigningKey) -> None:
        super().__init__("jwks-server")
        self.keys = list(keys)
        self.requests = 0
        self.fail = False
        #: (status, body) to answer instead of the keys, or None.
        self.answer: tuple[int, bytes] | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    def rotate(self, *keys: SigningKey) -> None:
        """Publish these keys instead (the old ones disappear)."""
        self.keys = list(keys)

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.fail:
            return web.Response(status=503, text="down")
        if self.answer is not None:
            status, body = self.answer
            return web.Response(status=status, body=body, content_type="application/json")
        return web.json_response({"keys": [k.jwk for k in self.keys]})

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/jwks.json", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/.well-known/jwks.json"

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture(name="idp")
def idp_fixture() -> IdentityProvider:
    return IdentityProvider()


@pytest.fixture(name="jwks")
def jwks_fixture(idp: IdentityProvider) -> Iterator[JWKSServer]:
    server = JWKSServer(idp.key).start()
    try:
        yield server
    finally:
        server.stop()
