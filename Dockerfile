# perception-llm: the OpenAI-compatible custom LLM for Tavus personas.
# Build:  docker build -t perception-llm .
# Run:    docker run -p 8000:8000 --ulimit nofile=65536:65536 -e PERCEPTION_LLM_API_KEY=change-me-to-a-long-random-key perception-llm
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PERCEPTION_LLM_HOST=0.0.0.0 \
    PERCEPTION_LLM_PORT=8000

WORKDIR /app
# Dependencies first, from the fully pinned, hashed lock (README: "The image's lock file"), in
# their own layer: a code change does not reinstall them, and every build gets the same bytes.
# It holds the [postgres] extra (replicas record calls to one PostgreSQL, PERCEPTION_LLM_CAPTURE;
# a SQLite capture needs a writable volume: the app directory is read-only to the user) and the
# build backend, so the project itself builds without fetching anything.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY server ./server
COPY perception ./perception
COPY prompts ./prompts
COPY scenarios ./scenarios
COPY emulator ./emulator
COPY evals ./evals
RUN pip install --no-deps --no-build-isolation . \
    && pip check \
    && useradd --system --uid 10001 --no-create-home perception

USER perception
EXPOSE 8000

# /healthz needs no key; stdlib only, so the image needs no curl.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"

# The server refuses a public interface without PERCEPTION_LLM_API_KEY: set it at `docker run`.
# SIGTERM (docker stop) drains in-flight streams within PERCEPTION_LLM_SHUTDOWN_GRACE_SECONDS;
# give `docker stop --time` a little more than that.
STOPSIGNAL SIGTERM
CMD ["perception-llm", "serve"]
