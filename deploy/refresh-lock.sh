#!/usr/bin/env bash
# Refresh requirements.lock: the Docker image's dependencies, every one pinned and hashed
# (README: "The image's lock file"). uv resolves for the image's Python and platform (the
# Dockerfile's python:3.11-slim on x86-64 Linux) whatever machine runs this. Extra arguments go
# to `uv pip compile`, e.g. --upgrade-package aiohttp; without any, every pin moves to the newest
# release pyproject.toml allows.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
"$python" -m pip install -q uv
# With the build backend (pyproject.toml's [build-system] requires), so the image builds the
# project itself without fetching anything unpinned.
"$python" -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' |
    "$python" -m uv pip compile pyproject.toml - --extra postgres --generate-hashes \
        --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
        --custom-compile-command "bash deploy/refresh-lock.sh" --quiet \
        "${@:---upgrade}" -o requirements.lock
