"""The bridge inside the test process: `create_app` served by uvicorn in a thread with its own
event loop, on a loopback port, its log lines in a file of its own (the JSON lines
`python -m app` writes to stdout).

A bridge started here behaves as a freshly started process: its own settings (from the given
environment, no `.env`), store, clients, workers and metrics. What needs a real process (a
SIGKILL, the exit code on bad settings, several processes on one database) is run with
`app.devkit.processes.start_bridge`."""

import contextvars
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pydantic_settings import EnvSettingsSource

import app.oauth.repository
from app.config import Settings, load_settings
from app.devkit.server_thread import ServerThread
from app.kit.logs import JsonFormatter
from app.main import create_app

# Libraries whose INFO lines `app.kit.logs.configure_logging` keeps out of the bridge's log.
_QUIET_LOGGERS = ("httpx", "httpcore", "pymongo")


def settings_from(env: Mapping[str, str]) -> Settings:
    """The settings `python -m app` reads from this process's environment updated with `env`,
    parsed as environment variables are (lists, JSON), without a `.env` file."""
    source = EnvSettingsSource(Settings, case_sensitive=False)
    source.env_vars = {name.lower(): value for name, value in {**os.environ, **env}.items()}
    return load_settings(_env_file=None, **source())


@dataclass(eq=False)
class _BridgeLog:
    stream: TextIO
    level: int


_current_log: contextvars.ContextVar[_BridgeLog | None] = contextvars.ContextVar(
    "bridge_log", default=None
)


class _BridgeLogRouter(logging.Handler):
    """Writes each record to the log of the bridge whose thread (or task) logged it; the test's
    own records and the fakes' are not a bridge's. Installed on the root logger while any bridge
    runs here."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self._logs: list[_BridgeLog] = []
        self._level_before = logging.WARNING

    def emit(self, record: logging.LogRecord) -> None:
        log = _current_log.get()
        if log is None or record.levelno < log.level:
            return
        log.stream.write(self.format(record) + "\n")
        log.stream.flush()  # a test reads the file while the bridge runs

    def attach(self, log: _BridgeLog) -> None:
        with _ROUTER_LOCK:
            root = logging.getLogger()
            if not self._logs:
                self._level_before = root.level
                root.addHandler(self)
                for name in _QUIET_LOGGERS:
                    logging.getLogger(name).setLevel(logging.WARNING)
            self._logs.append(log)
            self._set_root_level()

    def detach(self, log: _BridgeLog) -> None:
        with _ROUTER_LOCK:
            self._logs.remove(log)
            root = logging.getLogger()
            if self._logs:
                self._set_root_level()
                return
            root.removeHandler(self)
            root.setLevel(self._level_before)

    def _set_root_level(self) -> None:
        """Low enough for every running bridge, never higher than it was."""
        levels = [entry.level for entry in self._logs]
        logging.getLogger().setLevel(min(self._level_before, *levels))


_ROUTER_LOCK = threading.Lock()
_ROUTER = _BridgeLogRouter()


def _as_a_new_process() -> None:
    """Forget what the app remembers once per process (a log line said once)."""
    app.oauth.repository._reported_undecryptable.clear()


class BridgeThread:
    def __init__(self, env: Mapping[str, str], port: int, log_path: Path) -> None:
        settings = settings_from({**env, "PORT": str(port)})
        self._log = _BridgeLog(
            log_path.open("a", encoding="utf-8"), logging.getLevelNamesMapping()[settings.log_level]
        )
        context = contextvars.Context()
        context.run(_current_log.set, self._log)
        self._server = ServerThread(
            create_app(settings),
            port=port,
            context=context,
            lifespan="on",
            timeout_graceful_shutdown=int(settings.shutdown_timeout_seconds),
            access_log=False,
            server_header=False,
            proxy_headers=False,
        )

    @property
    def running(self) -> bool:
        return self._server.running

    def start(self, timeout: float = 30) -> "BridgeThread":
        _as_a_new_process()
        _ROUTER.attach(self._log)
        try:
            self._server.start(timeout)
        except RuntimeError:
            self._close_log()
            raise
        return self

    def stop(self, *, graceful: bool = True) -> int:
        """As SIGTERM would (`graceful`): open requests answered, the lifespan's shutdown run."""
        try:
            return self._server.stop(graceful=graceful)
        finally:
            self._close_log()

    def _close_log(self) -> None:
        _ROUTER.detach(self._log)
        self._log.stream.close()
