"""`python -m app` (or `cast-ghl-provider`): validate settings, then serve with uvicorn."""

import sys

import uvicorn

from app.config import SettingsError, load_settings
from app.logs import configure_logging
from app.main import create_app


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print("cast-ghl-provider: invalid configuration", file=sys.stderr)
        for line in exc.lines:
            print(f"  {line}", file=sys.stderr)
        sys.exit(2)
    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_seconds),
        server_header=False,
    )


if __name__ == "__main__":
    main()
