"""The same from async code: one AsyncClient for the life of the app."""

import asyncio

import gemini_tokens


async def main() -> None:
    async with gemini_tokens.AsyncClient() as client:
        token = await client.create(uses=1)
    print(token.live_url().split("?")[0])  # the URL without the secret part


asyncio.run(main())
