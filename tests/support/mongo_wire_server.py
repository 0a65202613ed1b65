"""A MongoDB wire-protocol server on 127.0.0.1 (mongoeco, memory engine) for the tests.

Run as a process: prints its URI on the first line of stdout, serves until killed.
"""

import argparse
import asyncio

from mongoeco.wire import AsyncMongoEcoProxyServer


async def serve(port: int) -> None:
    async with AsyncMongoEcoProxyServer(host="127.0.0.1", port=port) as server:
        print(server.address.uri, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(serve(parser.parse_args().port))
