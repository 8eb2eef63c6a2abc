# Doorstep: API, webhooks, inbox, dispatcher and scheduler in one process.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DATABASE_URL=sqlite:////data/doorstep.db \
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
    && mkdir -p /data "$DOORSTEP_MODEL_DIR" && chown -R doorstep:doorstep /data "$DOORSTEP_MODEL_DIR"

USER doorstep
# Train the intent model once, at build time, as the user that serves, into $DOORSTEP_MODEL_DIR
# (world-readable files): every container start then loads it in well under a second instead
# of retraining. The check fails the build if the runtime user could not read it back.
RUN python -c "from intents.classifier import get_model; get_model()" \
    && python -c "import glob, os, sys; files = glob.glob(os.path.join(os.environ['DOORSTEP_MODEL_DIR'], 'nlu-*.pkl')); sys.exit(0 if files and all(os.access(f, os.R_OK) for f in files) else 'no readable model in ' + os.environ['DOORSTEP_MODEL_DIR'])"
VOLUME ["/data"]
EXPOSE 8000
# /healthz is 200 once the model is loaded and the database answers (503 with a reason before).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"

CMD ["doorstep", "serve", "--host", "0.0.0.0", "--port", "8000"]
