"""Run an ASGI app under uvicorn on a loopback port, in a background thread with its own loop."""

import contextvars
import threading
import time
from typing import Any, Self

import uvicorn
from starlette.types import ASGIApp

from app.devkit.processes import free_port


class ServerThread:
    """`options` are uvicorn's (`uvicorn.Config`); `context` is the one the server's thread runs
    in (its tasks inherit it). uvicorn leaves logging alone: its lines go to the root logger."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        port: int | None = None,
        context: contextvars.Context | None = None,
        **options: Any,
    ) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            **{"log_config": None, "log_level": None, "lifespan": "off", **options},
        )
        self._server = uvicorn.Server(config)
        self._context = context or contextvars.Context()
        self._thread = threading.Thread(target=self._context.run, args=(self._run,), daemon=True)
        self.exit_code: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            self._server.run()
            self.exit_code = 0
        except SystemExit as exc:  # uvicorn exits 3 when the app's start-up fails
            self.exit_code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            self.exit_code = 1
            raise

    def start(self, timeout: float = 10) -> Self:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"server exited {self.exit_code} before it started")
            if time.monotonic() > deadline:
                self.stop(graceful=False)
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def stop(self, *, graceful: bool = False, wait: bool = True, timeout: float = 60) -> int:
        """Stop serving: `graceful` runs the app's lifespan shutdown and lets open requests
        finish (uvicorn on SIGTERM); otherwise open connections and the lifespan are dropped.
        Returns the exit code a process would have (0: a clean stop); without `wait`, 0 at once
        while the thread winds down on its own (a fake no test reads any more)."""
        self._server.should_exit = True
        self._server.force_exit = not graceful
        if not wait:
            return 0
        self._thread.join(timeout=timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"server on port {self.port} did not stop in {timeout} s")
        return self.exit_code if self.exit_code is not None else 1
