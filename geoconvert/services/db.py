"""Database writes that ride out a brief outage (a restarted server, a locked SQLite file)."""

import logging
from functools import partial

from django.db import close_old_connections, connection
from django.db.utils import InterfaceError, OperationalError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

logger = logging.getLogger(__name__)

TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)


def _retryable(exc: BaseException) -> bool:
    # Inside a transaction the whole transaction must be retried, not one statement of it.
    return isinstance(exc, TRANSIENT_DB_ERRORS) and not connection.in_atomic_block


def _reconnect(tries: int, state: RetryCallState) -> None:
    close_old_connections()
    connection.close()
    logger.warning(
        "Database write failed (attempt %s of %s), retrying in %.2fs: %s",
        state.attempt_number,
        tries,
        state.upcoming_sleep,
        state.outcome.exception(),
    )


def retrying_db(write, *args, tries: int = 3, **kwargs):
    """``write(*args, **kwargs)``, retried on transient database errors with exponential
    backoff and jitter, on a fresh connection each time."""
    retrying = Retrying(
        stop=stop_after_attempt(tries),
        wait=wait_random_exponential(multiplier=0.25, max=4.0),
        retry=retry_if_exception(_retryable),
        before_sleep=partial(_reconnect, tries),
        reraise=True,
    )
    return retrying(write, *args, **kwargs)
