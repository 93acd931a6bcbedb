"""A throwaway certificate authority for ``Emulator(tls=True)``.

Real clients insist on TLS (the official Python SDK always opens the Live socket with
``wss://``), so the emulator can serve https and wss with a server certificate for
``127.0.0.1`` and ``localhost`` signed by a CA made at start. Nothing outlives `close`: the
CA's PEM file is a temporary file deleted then. ``trustme`` is imported only here, lazily.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from typing import Any

from gemini_tokens.testing._core import ConfigurationError

__all__ = ["ThrowawayCA"]


def _import_trustme() -> Any:
    try:
        import trustme
    except ImportError:
        raise ConfigurationError(
            "Emulator(tls=True) needs the 'trustme' package: "
            "pip install 'gemini-tokens[test]' (or pip install trustme)"
        ) from None
    return trustme


class ThrowawayCA:
    """A CA and a server certificate for loopback, with the CA written to a temp file."""

    def __init__(self, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> None:
        trustme = _import_trustme()
        self._ca = trustme.CA(organization_name="gemini-tokens emulator")
        self._cert = self._ca.issue_cert(*hosts)
        fd, path = tempfile.mkstemp(prefix="gemini-tokens-emulator-ca-", suffix=".pem")
        with os.fdopen(fd, "wb") as out:
            out.write(self._ca.cert_pem.bytes())
        self.ca_file: str | None = path

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate, PEM-encoded."""
        data: bytes = self._ca.cert_pem.bytes()
        return data

    def server_context(self) -> ssl.SSLContext:
        """The TLS context the emulator serves with."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this CA (and only it)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificate and host name
        self._ca.configure_trust(ctx)
        return ctx

    def close(self) -> None:
        """Delete the CA file. Idempotent."""
        path, self.ca_file = self.ca_file, None
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
