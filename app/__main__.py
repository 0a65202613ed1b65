"""`python -m app` (or `cast-ghl-provider`): validate settings, then serve with uvicorn."""

import signal
import sys
from types import FrameType

import uvicorn

from app.config import SettingsError, load_settings
from app.kit.logs import configure_logging
from app.main import create_app


def _exit_after_graceful_shutdown(signum: int, frame: FrameType | None) -> None:
    """uvicorn re-raises SIGTERM once it has shut down gracefully: that is a clean exit."""
    raise SystemExit(0)


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print("cast-ghl-provider: invalid configuration", file=sys.stderr)
        for line in exc.lines:
            print(f"  {line}", file=sys.stderr)
        sys.exit(2)
    configure_logging(settings.log_level)
    signal.signal(signal.SIGTERM, _exit_after_graceful_shutdown)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_seconds),
        log_config=None,  # app/kit/logs.py configures logging
        access_log=False,  # the webhook paths log what they did, with the request id
        server_header=False,
        # Nothing reads the client's address or scheme (links are built from BASE_URL): no
        # X-Forwarded-* rewriting, as before.
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
