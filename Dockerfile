# One image for the API, the workers and the scheduler; the command picks the role:
#   docker run IMAGE                          -> API (gunicorn wsgi:app on :8000)
#   docker run IMAGE python worker.py high    -> a worker pool on the high queue
#   docker run IMAGE python scheduler.py      -> rq-scheduler
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BIND=0.0.0.0:8000

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

RUN useradd --system --uid 10001 --no-create-home app
COPY --chown=app:app service/ service/
COPY --chown=app:app fake_anthropic/ fake_anthropic/
COPY --chown=app:app worker.py scheduler.py wsgi.py gunicorn.conf.py ./
USER app

EXPOSE 8000
CMD ["gunicorn", "wsgi:app"]
