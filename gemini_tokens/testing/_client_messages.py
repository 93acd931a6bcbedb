"""The Live API's client messages (what a client sends), as the emulator reads them.

What the emulator sends back for a turn is `_model_replies`.

``BidiGenerateContentClientMessage`` is a oneof of ``setup``, ``clientContent``,
``realtimeInput`` and ``toolResponse``. The core models the setup (`LiveConnectConfig`) and
content (`Content`, `Blob`); the other message shapes are modelled here, with the fields
the service documents, so that they are read by the same proto3-JSON rules
(`_proto_json.read`) and structured by the core's converter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from gemini_tokens.testing._core import Blob, Content, ValidationError, camel, user
from gemini_tokens.testing._proto_json import WireError, invalid_value, read, unknown_field

__all__ = [
    "CLIENT_MESSAGES",
    "ActivityMarker",
    "ClientContent",
    "FunctionResponse",
    "RealtimeInput",
    "ToolResponse",
    "read_client_message",
]


@attrs.frozen(kw_only=True)
class ActivityMarker:
    """``activityStart`` / ``activityEnd``: an empty message."""


@attrs.frozen(kw_only=True)
class ClientContent:
    """``clientContent``: turns of conversation, and whether the user's turn is complete."""

    turns: Sequence[Content] | None = None
    turn_complete: bool | None = None


@attrs.frozen(kw_only=True)
class RealtimeInput:
    """``realtimeInput``: streamed audio, video or text, and activity markers."""

    media_chunks: Sequence[Blob] | None = None
    audio: Blob | None = None
    video: Blob | None = None
    text: str | None = None
    activity_start: ActivityMarker | None = None
    activity_end: ActivityMarker | None = None
    audio_stream_end: bool | None = None


@attrs.frozen(kw_only=True)
class FunctionResponse:
    """One answer to a ``toolCall``'s function call."""

    id: str | None = None
    name: str | None = None
    response: Mapping[str, Any] | None = None
    will_continue: bool | None = None
    scheduling: str | None = None
    parts: Sequence[Mapping[str, Any]] | None = None


@attrs.frozen(kw_only=True)
class ToolResponse:
    """``toolResponse``: the client's answers to function calls."""

    function_responses: Sequence[FunctionResponse] | None = None


#: The client messages (the oneof's members), canonical name -> shape (None: the setup).
CLIENT_MESSAGES: dict[str, type | None] = {
    "setup": None,
    "clientContent": ClientContent,
    "realtimeInput": RealtimeInput,
    "toolResponse": ToolResponse,
}
_PROTO_NAMES = {
    "setup": "setup",
    "clientContent": "client_content",
    "realtimeInput": "realtime_input",
    "toolResponse": "tool_response",
}
#: Each kind by its lowerCamelCase and its proto (snake_case) name.
_KINDS = {**{kind: kind for kind in _PROTO_NAMES}, **{v: k for k, v in _PROTO_NAMES.items()}}


def read_client_message(raw: Any) -> tuple[str, Any, Any]:
    """A client message -> ``(kind, as received, parsed)``.

    ``kind`` is the canonical camelCase name; ``as received`` is the payload with its own
    field names in camelCase (what `LiveSession.messages` records; user data is kept as
    sent); ``parsed`` is the structured message (`ClientContent` ...), or for ``setup`` the
    payload as received (read by `_setup.parse_setup`).

    Raises:
        WireError: not an object, an unknown field or value, or not exactly one kind.
    """
    if not isinstance(raw, Mapping):
        raise WireError("Invalid JSON payload received. Expected an object.")
    kinds: list[tuple[str, Any]] = []
    for key, value in raw.items():
        kind = _KINDS.get(str(key))
        if kind is None:
            raise unknown_field(str(key), "")
        if value is not None:
            kinds.append((kind, value))
    if len(kinds) != 1 or len({kind for kind, _ in kinds}) != len(kinds):
        raise WireError(
            "Invalid argument: a message must set exactly one of "
            "setup, clientContent, realtimeInput, toolResponse."
        )
    ((kind, value),) = kinds
    shape = CLIENT_MESSAGES[kind]
    if shape is None:
        return kind, value, value
    path = _PROTO_NAMES[kind]
    normalised = read(value, shape, path)
    try:
        parsed: Any = user.structure(normalised, shape)
    except ValidationError as exc:
        raise invalid_value(f"{path}.{exc.field}", exc.rule) from None
    received = {camel(str(k)): v for k, v in value.items()} if isinstance(value, Mapping) else value
    return kind, received, parsed
