"""The OpenAPI schema at /api/v1/schema/ is what the API does: schemathesis generates requests
from it (a bounded number per operation) and every response must be documented, match its
schema, and never be a server error."""

import os

import pytest
from django.core.files.base import ContentFile
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token

from geoconvert.services.conversions import conversion_start
from tagger.services import item_create
from webhooks.services.endpoints import webhook_endpoint_create, webhook_endpoint_test

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "10"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Pings the broker and workers for a second per call; tested on its own (tests/geoconvert/api).
# The event streams answer 501 under WSGI (this app) and never end under ASGI; their answers
# are checked in tests/geoconvert/api/test_events.py.
SKIPPED_PATHS = {"/api/v1/health/", "/api/v1/events/", "/api/v1/tasks/{id}/events/"}


@pytest.fixture
def app_in_test_transaction(db):
    """The WSGI app, kept from closing the test's database connection after each request (as
    Django's test client does), so every request runs inside the test's transaction and
    nothing is committed or dispatched to a worker."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield get_wsgi_application()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _operations(app):
    schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", app)
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path not in SKIPPED_PATHS:
            yield operation


def test_every_response_matches_the_schema(app_in_test_transaction, user):
    token = Token.objects.create(user=user).key
    headers = {"Authorization": f"Token {token}"}
    item = item_create(owner=user, name="a.tif", file=ContentFile(b"x" * 10))
    conversion, _ = conversion_start(item=item)  # stays PENDING: nothing is dispatched here
    # Path values that exist, so the 200 answers are checked too, not only the 404s.
    real_ids = {"id": str(item.pk), "item_id": str(item.pk)}
    real_task_ids = {"id": str(conversion.task_id)}
    endpoint = webhook_endpoint_create(owner=user, url="https://hooks.example.org/")
    delivery = webhook_endpoint_test(endpoint=endpoint)
    real_webhook_ids = {"id": str(endpoint.pk), "delivery_id": str(delivery.pk)}

    operations = list(_operations(app_in_test_transaction))
    assert len(operations) >= 12
    for operation in operations:

        @hypothesis_settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(), use_real_ids=st.booleans())
        def check(case, use_real_ids):
            if use_real_ids and case.path_parameters:
                ids = real_task_ids if case.path.startswith("/api/v1/tasks") else real_ids
                if case.path.startswith("/api/v1/webhooks"):
                    ids = real_webhook_ids
                ids = {k: v for k, v in ids.items() if k in case.path_parameters}
                case.path_parameters = {**case.path_parameters, **ids}
            response = case.call(headers=headers)
            case.validate_response(response, checks=CHECKS, headers=headers)

        check()
