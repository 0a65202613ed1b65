"""A MongoDB wire-protocol server on 127.0.0.1 (mongoeco, memory engine) for the tests.

Run as a process (`start_mongo_wire_server`): prints its URI on the first line of stdout, serves
until killed.
"""

import argparse
import asyncio
import subprocess
import sys

from mongoeco.wire import AsyncMongoEcoProxyServer

from tests.support import ROOT


def start_mongo_wire_server(port: int = 0) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.mongo_wire_server", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    uri = proc.stdout.readline().strip()
    if not uri.startswith("mongodb://"):
        proc.kill()
        raise RuntimeError(f"mongo wire server did not start: {uri!r}")
    return proc, uri


async def serve(port: int) -> None:
    async with AsyncMongoEcoProxyServer(host="127.0.0.1", port=port) as server:
        print(server.address.uri, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(serve(parser.parse_args().port))
