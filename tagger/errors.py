"""The one error type of tagger's services; the API turns it into the one error shape.

Every error response body is ``{"code": ..., "message": ..., **extra}``.
"""


class ApplicationError(Exception):
    status_code = 400
    default_code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, extra: dict | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.extra = extra or {}


class NotFound(ApplicationError):
    status_code = 404
    default_code = "not_found"


class Conflict(ApplicationError):
    status_code = 409
    default_code = "conflict"


class Unprocessable(ApplicationError):
    status_code = 422
    default_code = "unprocessable"


class PayloadTooLarge(ApplicationError):
    status_code = 413
    default_code = "payload_too_large"


class ServiceUnavailable(ApplicationError):
    status_code = 503
    default_code = "service_unavailable"


class Forbidden(ApplicationError):
    status_code = 403
    default_code = "forbidden"
