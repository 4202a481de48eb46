# One image for the web process and the workers (compose.yaml picks the command).
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libpq5 nodejs npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY webapp ./webapp
COPY workers ./workers
RUN pip install .
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY manage.py ./
COPY templates ./templates
COPY static ./static
RUN DEBUG=1 python manage.py collectstatic --noinput
RUN useradd --create-home weightspace && mkdir -p /data && chown weightspace /data
USER weightspace
EXPOSE 8000
CMD ["gunicorn", "webapp.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "120"]
