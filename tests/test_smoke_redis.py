"""The broker the tests (and their Celery workers) use is a Redis that answers."""

from django.conf import settings

from config.celery_app import app


def test_redis_answers_ping(redis_client):
    assert redis_client.ping() is True


def test_settings_and_celery_point_at_that_redis(redis_url):
    assert settings.REDIS_URL == redis_url
    assert app.conf.broker_url == settings.CELERY_BROKER_URL


def test_celery_reaches_the_broker(redis_url):
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=3)
        queue = connection.SimpleQueue("tagger-smoke-test")
        try:
            queue.put({"ping": "pong"})
            message = queue.get(timeout=5)
            message.ack()
            assert message.payload == {"ping": "pong"}
        finally:
            queue.queue.delete()
            queue.close()
