"""Sending a stored file over HTTP: validators, conditional requests and byte ranges.

`file_response` answers GET and HEAD as RFC 9110 asks: preconditions first (412, 304),
then If-Range, then Range (206, multipart/byteranges, 416), else the whole file (200).
The bytes are streamed in bounded chunks from seek positions; the whole file is never read
into memory. Behind nginx (`accel_prefix`) Django only checks the preconditions and hands
the bytes, ranges included, to nginx with X-Accel-Redirect (docker/nginx.conf).

Every error body has the API's one shape, ``{"code": ..., "message": ...}``.
"""

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)
from django.utils.cache import get_conditional_response
from django.utils.http import content_disposition_header, http_date, parse_http_date_safe

from tagger.storage import read_range

CHUNK_BYTES = 64 * 1024
# More range-specs than this in one Range header and it is ignored: the whole file, 200.
# The same number, and the same answer, as nginx's `max_ranges` in docker/nginx.conf.
MAX_RANGES = 100

_INT_RANGE = re.compile(r"([0-9]+)-([0-9]*)")
_SUFFIX_RANGE = re.compile(r"-([0-9]+)")


@dataclass(frozen=True)
class StoredFile:
    path: Path | None  # absolute path on local disk; None for an object in a bucket
    name: str  # name in the storage (what X-Accel-Redirect names, on local storage)
    size: int
    etag: str  # strong validator without quotes, computed when the file was stored
    last_modified: datetime  # aware
    content_type: str
    filename: str  # the download's file name (Content-Disposition)


@dataclass(frozen=True)
class ByteRange:
    start: int
    stop: int  # exclusive

    def __len__(self) -> int:
        return self.stop - self.start

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.stop - 1}/{size}"


def file_response(
    request: HttpRequest,
    stored: StoredFile,
    *,
    accel_prefix: str | None = None,
    cache_control: str = "private, no-cache",
) -> HttpResponseBase:
    """The response to a GET or HEAD of `stored`; HEAD gets the same status and headers and
    an empty body, without the file being opened."""
    etag, last_modified = f'"{stored.etag}"', int(stored.last_modified.timestamp())
    validators, conditional = _preconditions(request, stored, cache_control)
    if conditional is not None:
        return conditional

    representation = {
        **validators,
        "Content-Disposition": content_disposition_header(True, stored.filename),
    }
    if accel_prefix is not None and not _nginx_would_recheck(request):
        return _accel_response(stored, accel_prefix, representation)

    representation["Accept-Ranges"] = "bytes"
    ranges = None
    range_header = request.META.get("HTTP_RANGE")
    if range_header and _if_range_passes(request.META.get("HTTP_IF_RANGE"), etag, last_modified):
        ranges = parse_range(range_header, stored.size)

    head = request.method == "HEAD"
    if ranges is None:
        return _whole(stored, representation, head=head)
    if not ranges:
        return _error(
            request,
            416,
            "range_not_satisfiable",
            f"No requested range lies within the file, which is {stored.size} bytes long.",
            {**validators, "Accept-Ranges": "bytes", "Content-Range": f"bytes */{stored.size}"},
        )
    if len(ranges) == 1:
        return _single_range(stored, ranges[0], representation, head=head)
    return _multiple_ranges(stored, ranges, representation, head=head)


def file_redirect(
    request: HttpRequest, stored: StoredFile, url: str, *, cache_control: str = "private, no-cache"
) -> HttpResponseBase:
    """The answer to a GET or HEAD of `stored` that another server sends (a presigned URL of
    the bucket, which answers ranges itself): the preconditions are checked here first, as
    `file_response` does, then 302 to `url`."""
    validators, conditional = _preconditions(request, stored, cache_control)
    if conditional is not None:
        return conditional
    response = HttpResponse(status=302, headers=validators)
    response["Location"] = url
    return response


def _preconditions(request: HttpRequest, stored: StoredFile, cache_control: str):
    """The validators of `stored`, and the answer when the request's preconditions decide
    it (304, 412), else None. If-Match, If-Unmodified-Since, If-None-Match (weak, lists,
    *), If-Modified-Since."""
    etag = f'"{stored.etag}"'
    last_modified = int(stored.last_modified.timestamp())
    validators = {
        "ETag": etag,
        "Last-Modified": http_date(last_modified),
        "Cache-Control": cache_control,
    }
    carrier = HttpResponse(headers=validators)
    conditional = get_conditional_response(
        request, etag=etag, last_modified=last_modified, response=carrier
    )
    if conditional is carrier:
        return validators, None
    if conditional.status_code == 412:
        return validators, _error(
            request,
            412,
            "precondition_failed",
            "The file does not match the request's If-Match or If-Unmodified-Since.",
            validators,
        )
    return validators, conditional  # 304, with the validators and Cache-Control


def parse_range(header: str, size: int) -> list[ByteRange] | None:
    """The byte ranges a Range header asks of a `size`-byte file, sorted, with overlapping
    and adjacent ones merged.

    None: ignore the header and send the whole file (not the bytes unit, a syntax error, more
    than MAX_RANGES specs, or a suffix range of an empty file). []: none is satisfiable (416).
    """
    unit, equals, range_set = header.partition("=")
    if not equals or unit.strip().lower() != "bytes":
        return None
    specs = [spec.strip() for spec in range_set.split(",")]
    specs = [spec for spec in specs if spec]  # RFC 9110 §5.6.1: empty list elements are ok
    if not specs or len(specs) > MAX_RANGES:
        return None

    ranges = []
    for spec in specs:
        if match := _INT_RANGE.fullmatch(spec):
            first, last = int(match[1]), match[2]
            if last and int(last) < first:
                return None
            if first < size:
                stop = min(int(last) + 1, size) if last else size
                ranges.append(ByteRange(first, stop))
        elif match := _SUFFIX_RANGE.fullmatch(spec):
            length = int(match[1])
            if length and not size:
                # Satisfiable per RFC 9110 §14.1.1, yet a 206 cannot state an empty range:
                # the whole (empty) representation it is.
                return None
            if length:
                ranges.append(ByteRange(max(size - length, 0), size))
        else:
            return None
    return _coalesced(ranges)


def _coalesced(ranges: list[ByteRange]) -> list[ByteRange]:
    merged: list[ByteRange] = []
    for byte_range in sorted(ranges, key=lambda r: r.start):
        if merged and byte_range.start <= merged[-1].stop:
            last = merged.pop()
            byte_range = ByteRange(last.start, max(last.stop, byte_range.stop))
        merged.append(byte_range)
    return merged


def _if_range_passes(if_range: str | None, etag: str, last_modified: int) -> bool:
    """RFC 9110 §13.1.5: a strong ETag equal to ours, or exactly our Last-Modified date.
    A weak ETag never matches."""
    if if_range is None:
        return True
    if_range = if_range.strip()
    if if_range.startswith(("W/", '"')):
        return if_range == etag
    return parse_http_date_safe(if_range) == last_modified


def _nginx_would_recheck(request: HttpRequest) -> bool:
    """nginx's not-modified filter checks If-Match and If-Unmodified-Since again, against its
    own ETag (none: `etag off`) and the file's mtime rather than ours, and would answer 412 to
    a request Django has already let pass. Such (rare) requests are served by Django."""
    return request.META.get("HTTP_IF_MATCH", "").strip() not in ("", "*") or bool(
        request.META.get("HTTP_IF_UNMODIFIED_SINCE")
    )


def _accel_response(stored: StoredFile, accel_prefix: str, headers: dict) -> HttpResponse:
    # No Accept-Ranges: nginx adds its own and would repeat ours. It evaluates Range and
    # If-Range itself, against the ETag and Last-Modified passed on in nginx.conf.
    response = HttpResponse(content_type=stored.content_type, headers=headers)
    # nginx unescapes the URI; quoting keeps "?", "%", "#" and non-ASCII names intact.
    response["X-Accel-Redirect"] = accel_prefix + quote(stored.name, safe="/")
    return response


def _whole(stored: StoredFile, headers: dict, *, head: bool) -> HttpResponseBase:
    if head:
        response = HttpResponse(content_type=stored.content_type, headers=headers)
    elif stored.path is None:
        body = _FilePieces(stored, [ByteRange(0, stored.size)])
        response = StreamingHttpResponse(body, content_type=stored.content_type)
        for header, value in headers.items():
            response[header] = value
    else:
        # FileResponse lets the WSGI server send the file with wsgi.file_wrapper (sendfile).
        response = FileResponse(stored.path.open("rb"), content_type=stored.content_type)
        response.block_size = CHUNK_BYTES
        for header, value in headers.items():
            response[header] = value
    response["Content-Length"] = str(stored.size)
    return response


def _single_range(
    stored: StoredFile, byte_range: ByteRange, headers: dict, *, head: bool
) -> HttpResponseBase:
    response = _partial(stored, [byte_range], head=head)
    for header, value in headers.items():
        response[header] = value
    response["Content-Type"] = stored.content_type
    response["Content-Range"] = byte_range.content_range(stored.size)
    response["Content-Length"] = str(len(byte_range))
    return response


def _multiple_ranges(
    stored: StoredFile, ranges: list[ByteRange], headers: dict, *, head: bool
) -> HttpResponseBase:
    boundary = secrets.token_hex(16)
    pieces: list[bytes | ByteRange] = []
    for index, byte_range in enumerate(ranges):
        # The CRLF before a delimiter belongs to it (RFC 2046 §5.1.1), so none before the first.
        delimiter = f"--{boundary}" if index == 0 else f"\r\n--{boundary}"
        part_head = (
            f"{delimiter}\r\n"
            f"Content-Type: {stored.content_type}\r\n"
            f"Content-Range: {byte_range.content_range(stored.size)}\r\n\r\n"
        )
        pieces += [part_head.encode("latin-1"), byte_range]
    pieces.append(f"\r\n--{boundary}--\r\n".encode("latin-1"))

    response = _partial(stored, pieces, head=head)
    for header, value in headers.items():
        response[header] = value
    response["Content-Type"] = f"multipart/byteranges; boundary={boundary}"
    response["Content-Length"] = str(sum(len(piece) for piece in pieces))
    return response


def _partial(stored: StoredFile, pieces: list, *, head: bool) -> HttpResponseBase:
    if head:
        return HttpResponse(status=206)
    return StreamingHttpResponse(_FilePieces(stored, pieces), status=206)


class _FilePieces:
    """The response body: literal bytes (multipart framing) and byte ranges of one file, read
    in chunks of at most CHUNK_BYTES. A file on disk is opened at once, so that a missing file
    fails before any header is sent, and closed when the body ends or when Django closes
    the response (StreamingHttpResponse registers `close`), iterated or not. An object of a
    bucket is read a range at a time (one ranged GET each, streamed)."""

    def __init__(self, stored: StoredFile, pieces: list[bytes | ByteRange]) -> None:
        self._stored = stored
        self._file = stored.path.open("rb") if stored.path is not None else None
        self._pieces = pieces

    def __iter__(self) -> Iterator[bytes]:
        try:
            for piece in self._pieces:
                if isinstance(piece, bytes):
                    yield piece
                elif self._file is None:
                    yield from read_range(self._stored.name, piece.start, piece.stop)
                else:
                    yield from self._read(piece)
        finally:
            self.close()

    def _read(self, piece: ByteRange) -> Iterator[bytes]:
        self._file.seek(piece.start)
        remaining = len(piece)
        while remaining:
            chunk = self._file.read(min(remaining, CHUNK_BYTES))
            if not chunk:
                raise OSError(
                    f"{self._file.name} ended before byte {piece.stop - remaining}; "
                    "it is shorter than its stored size"
                )
            remaining -= len(chunk)
            yield chunk

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _error(request: HttpRequest, status: int, code: str, message: str, headers: dict):
    response = JsonResponse({"code": code, "message": message}, status=status, headers=headers)
    response["Content-Length"] = str(len(response.content))
    if request.method == "HEAD":
        response.content = b""
    return response
