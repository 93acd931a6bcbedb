import asyncio

import gemini_tokens


async def mint() -> dict[str, object]:
    async with gemini_tokens.AsyncClient() as client:  # GEMINI_API_KEY from the environment
        token = await client.create(
            uses=1,
            live_connect_constraints={
                "model": "gemini-2.5-flash-native-audio-preview-12-2025",
                "config": {"response_modalities": ["AUDIO"], "temperature": 0.7},
            },
        )
    return token.to_dict()  # give this to the browser; it holds no API key


print(sorted(asyncio.run(mint())))
