"""Mint a first token from a script. Reads GEMINI_API_KEY (and GEMINI_BASE_URL if set)."""

import gemini_tokens

with gemini_tokens.Client() as client:
    token = client.create(
        uses=1,
        expire_minutes=30,
        live_connect_constraints={
            "model": "gemini-2.5-flash-native-audio-preview-12-2025",
            "config": {"response_modalities": ["AUDIO"]},
        },
    )

print(token)  # the repr hides the token's name
print(sorted(token.to_dict()))  # what a server returns to its browser
