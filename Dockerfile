# One image for every role; the command picks it (docker-compose.yml runs them all):
#   docker run IMAGE                             -> API (python wsgi.py: granian on :8000)
#   docker run IMAGE python worker.py            -> a worker: every queue, webhooks included
#                                                   (or name some: high default low webhooks)
#   docker run IMAGE python scheduler.py         -> rq-scheduler
#   docker run IMAGE python -m fake_anthropic --host 0.0.0.0   -> the fake Anthropic server
# No HEALTHCHECK here: what "healthy" means depends on the role, so docker-compose.yml sets
# one per service.
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BIND=0.0.0.0:8000

WORKDIR /app
# Dependencies in their own layer: rebuilt only when requirements.txt changes. It is the
# runtime lock (`make lock`): every package pinned with its hashes, so the image gets
# exactly the files the tests ran with, or the build fails.
COPY requirements.txt .
RUN pip install --require-hashes --no-deps -r requirements.txt

RUN useradd --system --uid 10001 --no-create-home app
# The code stays owned by root: the processes write nothing under /app, so the app user
# gets no write access to what it runs.
COPY service/ service/
COPY fake_anthropic/ fake_anthropic/
COPY worker.py scheduler.py wsgi.py ./
USER app

EXPOSE 8000
CMD ["python", "wsgi.py"]
