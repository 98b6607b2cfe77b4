#!/bin/sh
# Entry point of the tagger image: wait until the database and Redis accept connections,
# optionally apply migrations, then run the command (gunicorn, celery worker/beat/flower).
set -eu

# Flower reads FLOWER_* variables itself; an empty one would mean "a user with no name".
[ -n "${FLOWER_BASIC_AUTH:-}" ] || unset FLOWER_BASIC_AUTH
[ -n "${FLOWER_URL_PREFIX:-}" ] || unset FLOWER_URL_PREFIX

python /app/docker/wait_for_services.py

if [ "${DJANGO_MIGRATE:-0}" = "1" ]; then
    python /app/manage.py migrate --noinput
fi

exec "$@"
