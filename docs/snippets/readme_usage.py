import asyncio

import gemini_tokens

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"


# In an async web server (aiohttp, FastAPI): one AsyncClient for the app's lifetime.
async def token_for_browser() -> dict[str, object]:
    async with gemini_tokens.AsyncClient() as client:  # key from GEMINI_API_KEY
        token = await client.create(
            uses=1,
            expire_minutes=30,
            live_connect_constraints={
                "model": MODEL,
                "config": {"response_modalities": ["AUDIO"], "temperature": 0.7},
            },
        )
    return token.to_dict()  # hand this (never the API key) to the browser


print(sorted(asyncio.run(token_for_browser())))

# In a script, a Flask/Django view or a Celery task: the same, blocking.
with gemini_tokens.Client() as client:
    token = client.create(uses=1)

# One-shot helpers on a shared default client.
token = gemini_tokens.create(uses=1)
token = asyncio.run(gemini_tokens.acreate(uses=1))
print(token.live_url().split("?")[0])  # the Live WebSocket; its query holds the token
