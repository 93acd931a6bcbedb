"""A plain script: mint one token and print its JSON (GEMINI_API_KEY from the env)."""

from __future__ import annotations

import json

import gemini_tokens


def main() -> None:
    # REPLACE THIS: decide who may receive a token before you mint one for them.
    user = "alice"
    token = gemini_tokens.create(
        uses=1,
        expire_minutes=10,
        live_connect_constraints={
            "model": "gemini-2.5-flash-native-audio-preview-12-2025",
            "config": {"response_modalities": ["AUDIO"]},
        },
    )
    print(json.dumps({"user": user, **token.to_dict()}, indent=2))


if __name__ == "__main__":
    main()
