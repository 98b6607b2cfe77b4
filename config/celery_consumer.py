"""The worker's consumer: Celery's own, made to survive the loss of a Redis broker.

Celery 5.7.0, after a broker connection is lost, *collects* the broken connection and then
*closes* it too (``Consumer.on_connection_error_after_connected``). With the Redis transport,
``collect()`` already closed the channels and detached the transport (``transport.client =
None``); the second close reaches the consumer's channel again, which, to put its
unacknowledged messages back in the queue, builds a new connection pool from that detached
transport and fails with ``AttributeError: 'NoneType' object has no attribute 'hostname'``.
That is not one of the errors Celery treats as a connection error, so the worker's main
process exits ("Unrecoverable error") instead of reconnecting.

Here a collected connection is not closed again: for Redis the collect has released
everything the close would. The unacknowledged messages stay in Redis's unacked set and are
delivered again after the visibility timeout, when the conversion's claim (the database row)
decides whether there is anything left to do. See docs/reliability.md, "Broker crash".
"""

from celery.worker.consumer import Consumer as CeleryConsumer


class _CollectedOnce:
    """A broker connection whose close() does nothing once it has been collected."""

    def __init__(self, connection):
        self._connection = connection
        self._collected = False

    def collect(self, *args, **kwargs):
        try:
            return self._connection.collect(*args, **kwargs)
        finally:
            self._collected = True

    def close(self):
        if not self._collected:
            self._connection.close()

    release = close

    def __getattr__(self, name):
        return getattr(self._connection, name)


class Consumer(CeleryConsumer):
    def on_connection_error_after_connected(self, exc):
        if self.connection is not None:
            self.connection = _CollectedOnce(self.connection)
        super().on_connection_error_after_connected(exc)
