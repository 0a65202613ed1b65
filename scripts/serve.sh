#!/usr/bin/env bash
# Install and run the bridge on the embedded store (SQLite under DATA_DIR, default ./data).
# Settings come from the environment and ./.env (made from .env.example on first run).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv ""
if [ ! -f .env ]; then
    cp .env.example .env
    echo "created .env from .env.example: put your GHL and Cast credentials there" >&2
fi
exec .venv/bin/python -m app
