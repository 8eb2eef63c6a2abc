# Doorstep: API, webhooks, inbox, dispatcher and scheduler in one process.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DATABASE_URL=sqlite:////data/doorstep.db \
    DOORSTEP_STATE_DIR=/data \
    DOORSTEP_MODEL_DIR=/app/model

RUN groupadd --system doorstep && useradd --system --gid doorstep --home-dir /app --shell /usr/sbin/nologin doorstep

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY intents ./intents
COPY flows ./flows
COPY integrations ./integrations
COPY data ./data
RUN pip install --editable ".[rasa]" \
    && doorstep classify "where is my order" > /dev/null \
    && mkdir -p /data && chown -R doorstep:doorstep /data
# (the classify run trains the intent model once, at build time, into $DOORSTEP_MODEL_DIR)

USER doorstep
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"

CMD ["doorstep", "serve", "--host", "0.0.0.0", "--port", "8000"]
