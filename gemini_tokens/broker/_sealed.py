"""`SealedBytes`: a token answer's bytes, with a repr that hides them.

The 200 answer holds the token's name. It passes through the adapters and the server's own
frames as it is written; an error tracker (Sentry records each frame's locals by default)
serializes whatever a failing frame holds, with ``repr``. Sealed, it shows its length only.
"""

from __future__ import annotations

__all__ = ["SealedBytes"]


class SealedBytes(bytes):
    """Bytes like any other to every server and framework, but ``repr`` and ``str`` show
    only their length."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{len(self)} bytes, hidden>"

    __str__ = __repr__
