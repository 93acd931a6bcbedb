"""Functions that run in worker processes (ProcessPoolExecutor), importable by name."""

from __future__ import annotations

import os

import gemini_tokens


def mint(base_url: str, api_key: str, max_retries: int) -> dict[str, object]:
    """Mint one token in this process; a typed error crosses back to the parent pickled."""
    with gemini_tokens.Client(api_key, base_url=base_url, max_retries=max_retries) as client:
        token = client.create(uses=1)
    return {"name": token.name, "pid": os.getpid()}
