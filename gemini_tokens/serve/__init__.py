"""``gemini-tokens serve``: the token broker as a standalone service, for backends in any
language.

The service is what the command line runs: its settings (``broker.toml`` and the
``GEMINI_TOKENS_*`` variables), the aiohttp app with health, readiness and metrics, and the
logging and telemetry set-up. It is built only on the public API of `gemini_tokens.broker`;
an app that embeds the broker never imports this package.

Needs the ``serve`` extra (``pip install 'gemini-tokens[serve]'``).
"""

from __future__ import annotations
