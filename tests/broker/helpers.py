"""Shared pieces of the broker tests: a demo authorize hook, a policy, request builders."""

from __future__ import annotations

import json
from typing import Any

from gemini_tokens.broker import BrokerRequest, Caller, Denied, Policy

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
ORIGIN = "https://app.example.com"
USERS = {"Bearer alice-token": "alice", "Bearer bob-token": "bob", "Bearer eve-token": "eve"}


async def authorize(request: BrokerRequest) -> Caller:
    user = USERS.get(request.headers.get("Authorization", ""))
    if user is None:
        raise Denied(401, "sign in first")
    if user == "eve":
        raise Denied(403, "eve is banned")
    return Caller(id=user, attributes={"plan": "pro" if user == "alice" else "free"})


def policy(**changes: Any) -> Policy:
    options: dict[str, Any] = {
        "model": MODEL,
        "config": {"response_modalities": ["AUDIO"]},
        "lock_additional_fields": [],
        "uses": 2,
        "expire_minutes": 15,
        "new_session_expire_minutes": 1,
        "client_may_set": {"speech_config": ["Kore", "Puck"], "temperature": (0.0, 1.0)},
    }
    options.update(changes)
    return Policy(**options)


def post(
    body: Any = None,
    *,
    user: str | None = "alice",
    origin: str | None = None,
    content_type: str | None = "application/json",
    raw: bytes | None = None,
    host: str = "broker.example.com",
    **extra: str,
) -> BrokerRequest:
    headers = {"Host": host, **extra}
    if user is not None:
        headers["Authorization"] = f"Bearer {user}-token"
    if origin is not None:
        headers["Origin"] = origin
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    if content_type is not None and data:
        headers["Content-Type"] = content_type
    return BrokerRequest(
        method="POST", path="/token", headers=headers, client_address="203.0.113.9", body=data
    )
