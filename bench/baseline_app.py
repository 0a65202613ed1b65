"""The yardstick: a bare FastAPI app under uvicorn that reads each POST's body and answers 202.

Served by stock uvicorn (`uvicorn.run`, one process, uvloop/httptools, no access log), so the
benchmark can print the bridge's ingest as a fraction of what this machine's FastAPI stack does
with no work at all (issue 19's yardstick). With `--server bridge`, served as the bridge is
(app/serving.py: one write per answer, no proxy headers), to show what that alone is worth.
`python -m bench.baseline_app --port 3999 [--server bridge]`
"""

import argparse

import uvicorn
from fastapi import FastAPI, Request, Response

from app.serving import UVICORN_OPTIONS

app = FastAPI()


@app.post("/webhooks/ghl/outbound")
async def accepted(request: Request) -> Response:
    await request.body()
    return Response(status_code=202)


@app.get("/healthz")
async def healthz() -> Response:
    return Response(status_code=200)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server", choices=["uvicorn", "bridge"], default="uvicorn")
    args = parser.parse_args()
    stock = {"log_config": None, "access_log": False, "server_header": False}
    options = UVICORN_OPTIONS if args.server == "bridge" else stock
    uvicorn.run(app, host="127.0.0.1", port=args.port, **options)
