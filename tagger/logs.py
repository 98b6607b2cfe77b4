"""What every log line says about the work it belongs to: the API request's id and, for a
conversion, its task id, item id, user id and attempt.

A context variable holds those fields; ContextFilter copies them onto every record, for the
formatters (JSON lines in production, text under `make run`: config/settings). The API
request's id comes from the `X-Request-ID` header (or is made up) in RequestIdMiddleware,
travels with the tasks the request sends as a Celery message header, and is bound again in
the worker for the task's lines (config/celery_app.py's signal receivers below).
"""

import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.signals import request_finished

FIELDS = ("request_id", "task_id", "item_id", "user_id", "attempt")
REQUEST_ID_HEADER = "X-Request-ID"
# A caller's own request id is kept when it looks like one (a UUID, a proxy's hex id).
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

_context: ContextVar[dict] = ContextVar("tagger_log_context", default={})  # noqa: B039 - never mutated


def log_fields() -> dict:
    """The fields bound now."""
    return dict(_context.get())


@contextmanager
def log_context(**fields) -> Iterator[None]:
    """Bind `fields` (added to those bound already) for the lines logged inside."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def log_bind(**fields) -> None:
    """Add `fields` to the current context, until the enclosing log_context (or, in a
    Celery task, the task) ends."""
    _context.set({**_context.get(), **fields})


class ContextFilter(logging.Filter):
    """Puts the bound fields on every record (None when not bound), so that a format can
    name them."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = _context.get()
        if "task_id" not in bound and record.name.startswith("celery"):
            # Celery's worker logs "Task ...[id] received" before the task's context exists;
            # the id is in the line's arguments.
            args = record.args if isinstance(record.args, dict) else {}
            bound = {**bound, "task_id": args.get("id")}
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, bound.get(name))
        return True


class TextFormatter(logging.Formatter):
    """The plain format, with the bound fields after the message: `... [task_id=... ...]`."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        bound = [(n, getattr(record, n, None)) for n in FIELDS]
        context = " ".join(f"{n}={v}" for n, v in bound if v is not None)
        return f"{text} [{context}]" if context else text


# The API side --------------------------------------------------------------------------


def request_id_of(header: str | None) -> str:
    if header and _VALID_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Binds the request's id (its `X-Request-ID`, or a new one) for everything the request
    logs and sends, and answers it in `X-Request-ID`.

    Bound for the rest of the request, not just inside the middleware: Django logs a 4xx or
    5xx ("Not Found: ...") after the middleware has returned. Unbound when the response is
    closed (request_finished), so nothing after it in the same thread claims the request.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        request_id = _bind_request(request)
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response

    async def _acall(self, request):
        request_id = _bind_request(request)
        response = await self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response


def _bind_request(request) -> str:
    request_id = request_id_of(request.headers.get(REQUEST_ID_HEADER))
    _context.set({"request_id": request_id})
    return request_id


def _unbind_request(**kwargs) -> None:
    _context.set({})


request_finished.connect(_unbind_request, dispatch_uid="tagger.logs.unbind_request")


# The Celery side (receivers connected in config/celery_app.py) -------------------------


def task_headers_add(headers: dict | None = None, **kwargs) -> None:
    """`before_task_publish`: a task sent while a request id is bound carries it."""
    request_id = _context.get().get("request_id")
    if headers is not None and request_id and "request_id" not in headers:
        headers["request_id"] = request_id


_task_tokens: dict = {}


def task_context_start(task_id=None, task=None, **kwargs) -> None:
    """`task_prerun`: the task's lines carry its id and the id of the request that sent it."""
    request_id = getattr(task.request, "request_id", None) if task is not None else None
    fields = {"task_id": task_id, "request_id": request_id}
    _task_tokens[task_id] = _context.set({k: v for k, v in fields.items() if v is not None})


def task_context_end(task_id=None, **kwargs) -> None:
    """`task_postrun`: nothing of this task stays bound for the next one in the process."""
    token = _task_tokens.pop(task_id, None)
    try:
        if token is not None:
            _context.reset(token)
    except ValueError:  # set in another context (a thread pool's other thread)
        _context.set({})
