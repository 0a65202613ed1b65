# cast-ghl-provider: Cast.ph as the default SMS provider of GoHighLevel.
#
#   docker build -t cast-ghl-provider .
#   docker run --env-file .env -p 127.0.0.1:3002:3002 -v cast-ghl-data:/data cast-ghl-provider
#   docker run --rm cast-ghl-provider cast-ghl sandbox     # the whole path on fakes, no credentials
#
# Two stages. The builder makes a virtualenv in /opt/venv. The runtime stage copies only that venv
# onto a clean python:3.13-slim. Both stages use the same base image, so the interpreter path inside
# the venv (/usr/local/bin/python3.13) is valid in both.

ARG PYTHON_IMAGE=python:3.13-slim

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /src

# 1) Dependencies only, exactly the lock file's versions, each checked against its sha256
#    (requirements.lock: the runtime set, never the [test] extra; scripts/lock.sh refreshes it).
#    This layer is rebuilt only when the lock changes, not on every code edit. All of them ship
#    manylinux wheels for CPython 3.13, so no compiler is needed.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

# 2) The package itself, without deps (they are already installed). This is a normal, non-editable
#    install, so the code ends up in the venv's site-packages and the /src tree is not needed later.
#    It includes the development kit (app/devkit: fake GHL and Cast), so `cast-ghl sandbox` runs
#    in the image; the service itself never loads it.
COPY pyproject.toml ./
COPY app/ ./app/
RUN pip install --no-deps . \
    && cd / && python -c "import app.config, app.devkit.harness, fastapi, uvicorn, pymongo, cryptography"

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="cast-ghl-provider" \
      org.opencontainers.image.description="Cast.ph as the default SMS conversation provider of GoHighLevel" \
      org.opencontainers.image.source="https://git.sds.dev/cast/cast-ghl-provider"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PORT=3002 \
    DATA_DIR=/data

# A fixed, unprivileged uid/gid. Give host bind mounts for /data to 10001:10001.
# /data holds the embedded SQLite database and its generated token key when MONGO_URI is unset.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin app \
    && mkdir -p /data \
    && chown app:app /data \
    && chmod 0750 /data

COPY --from=builder /opt/venv /opt/venv

# Configuration comes from the environment (compose `env_file:` / `docker run --env-file`); no
# .env file is baked in. The working directory is root-owned and empty, so nothing in it can
# shadow the installed `app` package (python -m puts the cwd first on sys.path).
WORKDIR /srv
VOLUME ["/data"]

USER app:app

EXPOSE 3002

# slim has no curl, so the check uses the stdlib. urlopen raises (exit code 1) on a refused
# connection, a timeout or any non-2xx answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '3002') + '/healthz', timeout=4)"]

# On SIGTERM the app drains open requests, then in-flight sends, each for up to
# SHUTDOWN_TIMEOUT_SECONDS (default 20 s). `docker stop` waits only 10 s before SIGKILL, so use
# docker stop -t 45 (compose sets stop_grace_period: 45s).
STOPSIGNAL SIGTERM

CMD ["python", "-m", "app"]
