# The production image: web (gunicorn), worker and beat all run from it (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HUBSYNC_VAR_DIR=/app/var

WORKDIR /app

# Runtime dependencies only (psycopg[binary] and cryptography ship wheels: no compiler needed).
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# An unprivileged user; var/ (celery beat's schedule) and staticfiles/ (collectstatic) are its only writes.
RUN useradd --create-home --uid 10001 hubsync \
    && mkdir -p /app/var /app/staticfiles \
    && chown -R hubsync:hubsync /app/var /app/staticfiles
USER hubsync

EXPOSE 8000
# The web command; docker-compose.yml overrides it for the worker and beat.
CMD ["sh", "-c", "python manage.py collectstatic --noinput && python manage.py migrate --noinput && exec gunicorn hubsync.wsgi:application --bind 0.0.0.0:8000 --access-logfile - --forwarded-allow-ips='*'"]
