"""The yardstick: a bare FastAPI app under uvicorn that reads each POST's body and answers 202.

Served as the bridge is (`uvicorn.run`, one process, uvloop/httptools, no access log), so the
benchmark can print the bridge's ingest as a fraction of what this machine's FastAPI stack does
with no work at all. `python -m bench.baseline_app --port 3999`
"""

import argparse

import uvicorn
from fastapi import FastAPI, Request, Response

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
    args = parser.parse_args()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        access_log=False,
        server_header=False,
    )
