"""One error shape for the whole API: ``{"code", "message", ...}``."""

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from tagger.errors import ApplicationError


def exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        body = {"code": exc.code, "message": exc.message, **exc.extra}
        return Response(body, status=exc.status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {
            "code": "invalid",
            "message": _validation_message(exc.detail),
            "errors": exc.detail,
        }
    elif isinstance(exc, exceptions.APIException):
        detail = exc.detail
        message = str(detail) if not isinstance(detail, (list, dict)) else str(exc.default_detail)
        codes = exc.get_codes()
        response.data = {
            "code": codes if isinstance(codes, str) else exc.default_code,
            "message": message,
        }
    if response.status_code == status.HTTP_401_UNAUTHORIZED and "WWW-Authenticate" not in response:
        response["WWW-Authenticate"] = 'Token realm="api"'
    return response


def _validation_message(detail) -> str:
    """A one-line summary of DRF's field errors, e.g. "name: This field is required."."""
    if isinstance(detail, dict):
        parts = []
        for field, errors in detail.items():
            first = errors[0] if isinstance(errors, list) and errors else errors
            if isinstance(first, (dict, list)):
                first = _validation_message(first)
            parts.append(str(first) if field == "non_field_errors" else f"{field}: {first}")
        return " ".join(parts) or "Invalid input."
    if isinstance(detail, list) and detail:
        return str(detail[0])
    return str(detail) or "Invalid input."
