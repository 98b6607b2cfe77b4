"""tagger.api.delivery: preconditions, byte ranges and streaming of a stored file.

No database: requests come from RequestFactory and the files live in tmp_path. The last
test sends the accel mode's requests through a real nginx configured with the download
location of docker/nginx.conf.
"""

import http.client
import json
import os
import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from django.core.handlers.wsgi import WSGIRequest
from django.test import RequestFactory
from django.utils.http import http_date

from tagger.api.delivery import CHUNK_BYTES, MAX_RANGES, ByteRange, StoredFile, file_response
from tests.conftest import require
from tests.http import NGINX, conf_block, running_nginx

# Closing a response sends request_finished, whose handler checks the database connection
# a previous test may have left open.
pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[3]
CONTENT = bytes(range(256)) * 40  # 10,240 bytes, every byte value at a known offset
SIZE = len(CONTENT)
ETAG = "5a1f0c9e2b7d4e8f"
LAST_MODIFIED = datetime(2024, 5, 17, 8, 30, 12, 750_000, tzinfo=UTC)
LAST_MODIFIED_HTTP = "Fri, 17 May 2024 08:30:12 GMT"  # truncated to the second
ACCEL = "/_protected/"

rf = RequestFactory()


def stored_file(directory: Path, content: bytes = CONTENT, **fields) -> StoredFile:
    name = fields.pop("name", "items/7/report.bin")
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    values = {
        "path": path,
        "name": name,
        "size": len(content),
        "etag": ETAG,
        "last_modified": LAST_MODIFIED,
        "content_type": "application/octet-stream",
        "filename": "report.bin",
    }
    return StoredFile(**(values | fields))


@pytest.fixture
def stored(tmp_path) -> StoredFile:
    return stored_file(tmp_path)


def respond(stored: StoredFile, method: str = "get", accel: bool = False, **headers):
    request = getattr(rf, method)("/api/v1/tree-items/1/download", headers=headers)
    return file_response(request, stored, accel_prefix=ACCEL if accel else None)


def body(response) -> bytes:
    try:
        if response.streaming:
            return b"".join(response.streaming_content)
        return response.content
    finally:
        response.close()


def byteranges(content: bytes, content_type: str) -> list[tuple[dict, bytes]]:
    """The parts of a multipart/byteranges body, checked for exact framing. An optional CRLF
    before the first delimiter is accepted (nginx sends one; a preamble may be empty)."""
    assert content_type.startswith("multipart/byteranges; boundary=")
    delimiter = b"--" + content_type.split("boundary=", 1)[1].encode()
    closing = b"\r\n" + delimiter + b"--\r\n"
    assert content.endswith(closing)
    content = content.removesuffix(closing).removeprefix(b"\r\n")
    assert content.startswith(delimiter + b"\r\n")
    parts = []
    for part in content[len(delimiter) + 2 :].split(b"\r\n" + delimiter + b"\r\n"):
        head, separator, data = part.partition(b"\r\n\r\n")
        assert separator
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        parts.append((headers, data))
    return parts


def open_handles(path: Path) -> int:
    """How many of this process's file descriptors are open on `path` (Linux)."""
    target, count = str(path.resolve()), 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == target
        except OSError:
            pass
    return count


# The whole file ---------------------------------------------------------------------------


def test_whole_file_with_validators_and_disposition(stored):
    response = respond(stored)

    assert response.status_code == 200
    assert body(response) == CONTENT
    assert response["Content-Length"] == str(SIZE)
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Accept-Ranges"] == "bytes"
    assert response["ETag"] == f'"{ETAG}"'
    assert response["Last-Modified"] == LAST_MODIFIED_HTTP
    assert response["Cache-Control"] == "private, no-cache"
    assert response["Content-Disposition"] == 'attachment; filename="report.bin"'
    assert "Content-Range" not in response


def test_cache_control_is_the_callers(stored):
    request = rf.get("/")
    response = file_response(request, stored, cache_control="private, max-age=3600")
    assert response["Cache-Control"] == "private, max-age=3600"
    response.close()


@pytest.mark.parametrize(
    ("filename", "disposition"),
    [
        ("Ортофото 2024.tif", "attachment; filename*=utf-8''" + quote("Ортофото 2024.tif")),
        ('say "cheese".png', r'attachment; filename="say \"cheese\".png"'),
    ],
)
def test_filename_in_content_disposition(tmp_path, filename, disposition):
    response = respond(stored_file(tmp_path, filename=filename))
    assert response["Content-Disposition"] == disposition
    response.close()


def test_empty_file_is_a_200_with_no_bytes(tmp_path):
    response = respond(stored_file(tmp_path, b""))
    assert response.status_code == 200
    assert response["Content-Length"] == "0"
    assert body(response) == b""


def test_a_missing_file_fails_before_any_header_is_sent(stored):
    stored.path.unlink()
    with pytest.raises(FileNotFoundError):
        respond(stored)
    with pytest.raises(FileNotFoundError):
        respond(stored, Range="bytes=0-9")


# One range --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "start", "stop"),
    [
        ("bytes=0-99", 0, 100),
        ("bytes=5-5", 5, 6),
        ("bytes=100-", 100, SIZE),  # open-ended
        ("bytes=-100", SIZE - 100, SIZE),  # suffix
        ("bytes=-99999", 0, SIZE),  # a suffix longer than the file: all of it
        ("bytes=10000-99999", 10000, SIZE),  # the end is clamped to the file
        (f"bytes={SIZE - 1}-", SIZE - 1, SIZE),
        ("Bytes=0-99", 0, 100),  # the unit is case-insensitive
        ("bytes= 0-99 ", 0, 100),
        ("bytes=,0-99,,", 0, 100),  # empty list elements are allowed
        ("bytes=0-9,5-19", 0, 20),  # overlapping ranges are merged...
        ("bytes=10-19,0-9", 0, 20),  # ...and adjacent ones
        ("bytes=0-,-10,0-0", 0, SIZE),
        ("bytes=0-9,20000-30000", 0, 10),  # the unsatisfiable part is dropped
        ("bytes=-0,0-9", 0, 10),
    ],
)
def test_single_range_is_a_206(stored, header, start, stop):
    response = respond(stored, Range=header)

    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {start}-{stop - 1}/{SIZE}"
    assert response["Content-Length"] == str(stop - start)
    assert response["Content-Type"] == "application/octet-stream"
    assert response["ETag"] == f'"{ETAG}"'
    assert response["Accept-Ranges"] == "bytes"
    assert response["Content-Disposition"] == 'attachment; filename="report.bin"'
    assert body(response) == CONTENT[start:stop]


@pytest.mark.parametrize(
    "header",
    [
        f"bytes={SIZE}-",  # first-pos at the end
        "bytes=20000-30000",
        "bytes=-0",  # an empty suffix
        f"bytes=-0,{SIZE + 5}-",
    ],
)
def test_no_satisfiable_range_is_a_416_in_the_error_shape(stored, header):
    response = respond(stored, Range=header)

    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{SIZE}"
    assert response["Content-Type"] == "application/json"
    assert json.loads(body(response)) == {
        "code": "range_not_satisfiable",
        "message": f"No requested range lies within the file, which is {SIZE} bytes long.",
    }
    assert "Content-Disposition" not in response


@pytest.mark.parametrize(
    "header",
    [
        "bytes=9-5",  # last-pos before first-pos
        "bytes=abc",
        "bytes=1-2-3",
        "bytes=-",
        "bytes=--5",
        "bytes=",
        "bytes",
        "bytes=0-5;q=1",
        "bytes=0-5,x",
        "bytes=١-٥",  # Arabic-Indic digits are not DIGIT
        "items=0-5",  # a unit we do not know
        "0-5",
    ],
)
def test_an_invalid_range_header_is_ignored(stored, header):
    response = respond(stored, Range=header)
    assert response.status_code == 200
    assert "Content-Range" not in response
    assert body(response) == CONTENT


def test_empty_file_ranges(tmp_path):
    empty = stored_file(tmp_path, b"")

    unsatisfiable = respond(empty, Range="bytes=0-")
    assert unsatisfiable.status_code == 416
    assert unsatisfiable["Content-Range"] == "bytes */0"
    unsatisfiable.close()

    # A non-empty suffix range is satisfiable (RFC 9110 §14.1.1), but a 206 cannot state an
    # empty range: the whole, empty file.
    whole = respond(empty, Range="bytes=-5")
    assert whole.status_code == 200
    assert body(whole) == b""


# Several ranges ---------------------------------------------------------------------------


def test_several_ranges_are_multipart_byteranges(stored):
    response = respond(stored, Range="bytes=-50, 0-9,100-199,150-249")

    assert response.status_code == 206
    content = body(response)
    assert response["Content-Length"] == str(len(content))
    assert "Content-Range" not in response
    parts = byteranges(content, response["Content-Type"])
    # Ascending, the overlapping 100-199 and 150-249 merged.
    expected = [(0, 10), (100, 250), (SIZE - 50, SIZE)]
    assert [data for _, data in parts] == [CONTENT[a:b] for a, b in expected]
    assert [headers for headers, _ in parts] == [
        {"Content-Type": "application/octet-stream", "Content-Range": f"bytes {a}-{b - 1}/{SIZE}"}
        for a, b in expected
    ]


def test_multipart_boundary_differs_per_response(stored):
    first, second = (respond(stored, Range="bytes=0-0,9-9") for _ in range(2))
    assert first["Content-Type"] != second["Content-Type"]
    first.close()
    second.close()


def test_up_to_max_ranges_are_served_and_more_are_ignored(stored):
    most = ",".join(f"{i * 10}-{i * 10}" for i in range(MAX_RANGES))
    response = respond(stored, Range=f"bytes={most}")
    assert response.status_code == 206
    parts = byteranges(body(response), response["Content-Type"])
    assert [data for _, data in parts] == [CONTENT[i * 10 : i * 10 + 1] for i in range(MAX_RANGES)]

    too_many = respond(stored, Range=f"bytes={most},{MAX_RANGES * 10}-")
    assert too_many.status_code == 200
    assert body(too_many) == CONTENT


# If-Range -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("if_range", "status"),
    [
        (f'"{ETAG}"', 206),
        ('"an-older-etag"', 200),
        (f'W/"{ETAG}"', 200),  # a weak ETag never matches
        (LAST_MODIFIED_HTTP, 206),
        ("Friday, 17-May-24 08:30:12 GMT", 206),  # RFC 850 spelling of the same date
        (http_date(LAST_MODIFIED.timestamp() - 1), 200),
        (http_date(LAST_MODIFIED.timestamp() + 1), 200),  # exactly equal, not "not before"
        ("not a date", 200),
    ],
)
def test_if_range_decides_between_part_and_whole(stored, if_range, status):
    response = respond(stored, Range="bytes=0-9", **{"If-Range": if_range})
    assert response.status_code == status
    assert body(response) == (CONTENT[:10] if status == 206 else CONTENT)


def test_if_range_does_not_rescue_an_unsatisfiable_range_when_stale(stored):
    response = respond(stored, Range="bytes=99999-", **{"If-Range": '"old"'})
    assert response.status_code == 200
    response.close()


# Preconditions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "if_none_match",
    [f'"{ETAG}"', f'"other", "{ETAG}"', "*", f'W/"{ETAG}"', f'W/"x", W/"{ETAG}"'],
)
@pytest.mark.parametrize("method", ["get", "head"])
def test_if_none_match_is_a_304(stored, if_none_match, method):
    response = respond(stored, method, Range="bytes=0-9", **{"If-None-Match": if_none_match})

    assert response.status_code == 304
    assert response["ETag"] == f'"{ETAG}"'
    assert response["Last-Modified"] == LAST_MODIFIED_HTTP
    assert response["Cache-Control"] == "private, no-cache"
    assert "Content-Disposition" not in response and "Content-Range" not in response
    assert body(response) == b""


def test_if_none_match_of_other_etags_sends_the_file(stored):
    response = respond(stored, **{"If-None-Match": '"other", W/"older"'})
    assert response.status_code == 200
    assert body(response) == CONTENT


@pytest.mark.parametrize(
    ("if_modified_since", "status"),
    [
        (LAST_MODIFIED_HTTP, 304),
        (http_date(LAST_MODIFIED.timestamp() + 3600), 304),
        (http_date(LAST_MODIFIED.timestamp() - 1), 200),
    ],
)
def test_if_modified_since(stored, if_modified_since, status):
    response = respond(stored, **{"If-Modified-Since": if_modified_since})
    assert response.status_code == status
    body(response)


def test_if_modified_since_is_ignored_beside_if_none_match(stored):
    response = respond(
        stored, **{"If-None-Match": '"other"', "If-Modified-Since": LAST_MODIFIED_HTTP}
    )
    assert response.status_code == 200
    body(response)


@pytest.mark.parametrize(
    "headers",
    [
        {"If-Match": '"other"'},
        {"If-Match": f'W/"{ETAG}"'},  # If-Match compares strongly
        {"If-Unmodified-Since": http_date(LAST_MODIFIED.timestamp() - 60)},
    ],
)
def test_failed_precondition_is_a_412_in_the_error_shape(stored, headers):
    response = respond(stored, Range="bytes=0-9", **headers)

    assert response.status_code == 412
    assert json.loads(body(response))["code"] == "precondition_failed"
    assert response["ETag"] == f'"{ETAG}"'


@pytest.mark.parametrize(
    "headers",
    [
        {"If-Match": f'"other", "{ETAG}"'},
        {"If-Match": "*"},
        {"If-Unmodified-Since": LAST_MODIFIED_HTTP},
    ],
)
def test_passed_precondition_serves_the_range(stored, headers):
    response = respond(stored, Range="bytes=0-9", **headers)
    assert response.status_code == 206
    assert body(response) == CONTENT[:10]


# HEAD -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Range": "bytes=10-19"},
        {"Range": "bytes=0-9,20-29"},
        {"Range": "bytes=99999-"},
        {"Range": "bytes=0-9", "If-Range": '"old"'},
    ],
)
def test_head_has_the_status_and_headers_of_get_and_no_body(stored, headers):
    get = respond(stored, **headers)
    get_content = body(get)
    stored.path.unlink()  # HEAD never opens the file
    head = respond(stored, "head", **headers)

    assert head.status_code == get.status_code
    assert not head.streaming
    assert head.content == b""
    assert head["Content-Length"] == str(len(get_content))

    def comparable(response):
        return {
            name: re.sub(r"boundary=\w+", "boundary=B", value) for name, value in response.items()
        }

    assert comparable(head) == comparable(get)


# Accel mode (nginx) -----------------------------------------------------------------------


def test_accel_mode_hands_the_file_to_nginx(tmp_path):
    stored = stored_file(tmp_path, name="items/7/ü data?#%.bin")
    stored.path.unlink()  # Django neither opens nor reads it
    response = respond(stored, accel=True, Range="bytes=0-9", **{"If-Range": '"old"'})

    assert response.status_code == 200
    assert response.content == b""
    assert response["X-Accel-Redirect"] == "/_protected/items/7/%C3%BC%20data%3F%23%25.bin"
    assert response["ETag"] == f'"{ETAG}"'
    assert response["Last-Modified"] == LAST_MODIFIED_HTTP
    assert response["Cache-Control"] == "private, no-cache"
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == 'attachment; filename="report.bin"'
    # nginx evaluates Range and If-Range, and adds Accept-Ranges itself.
    assert "Content-Range" not in response and "Accept-Ranges" not in response


def test_accel_mode_answers_304_and_412_itself(stored):
    not_modified = respond(stored, accel=True, **{"If-None-Match": f'"{ETAG}"'})
    assert not_modified.status_code == 304
    assert "X-Accel-Redirect" not in not_modified

    failed = respond(stored, accel=True, **{"If-Match": '"other"'})
    assert failed.status_code == 412
    assert "X-Accel-Redirect" not in failed


@pytest.mark.parametrize(
    "headers", [{"If-Match": f'"{ETAG}"'}, {"If-Unmodified-Since": LAST_MODIFIED_HTTP}]
)
def test_accel_mode_serves_what_nginx_would_refuse(stored, headers):
    # nginx checks these against its own validators and would answer 412.
    response = respond(stored, accel=True, Range="bytes=0-9", **headers)
    assert "X-Accel-Redirect" not in response
    assert response.status_code == 206
    assert body(response) == CONTENT[:10]


# Streaming --------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Range": "bytes=0-99"}, {"Range": "bytes=0-9,100-109"}])
def test_file_closes_when_the_response_closes_unread(stored, headers):
    response = respond(stored, **headers)
    assert open_handles(stored.path) == 1
    response.close()
    assert open_handles(stored.path) == 0


@pytest.mark.parametrize("header", ["bytes=0-99", "bytes=0-9,100-109"])
def test_file_closes_when_the_body_ends(stored, header):
    response = respond(stored, Range=header)
    b"".join(response.streaming_content)
    assert open_handles(stored.path) == 0
    response.close()


def test_file_closes_when_the_client_leaves_midway(tmp_path):
    big = stored_file(tmp_path, os.urandom(4 * CHUNK_BYTES))
    response = respond(big, Range="bytes=1-")
    next(iter(response.streaming_content))
    assert open_handles(big.path) == 1
    response.close()  # what the WSGI server does on a broken connection
    assert open_handles(big.path) == 0


@pytest.mark.parametrize("header", [None, "bytes=1-", "bytes=0-9,100-"])
def test_a_large_file_is_streamed_in_bounded_chunks(tmp_path, header):
    content = os.urandom(16 * CHUNK_BYTES + 123)
    big = stored_file(tmp_path, content)
    response = respond(big, **({"Range": header} if header else {}))
    assert response.streaming

    chunks = list(response.streaming_content)
    response.close()
    assert max(len(chunk) for chunk in chunks) <= CHUNK_BYTES
    assert len(chunks) >= 16
    joined = b"".join(chunks)
    if header is None:
        assert joined == content
    elif header == "bytes=1-":
        assert joined == content[1:]
    else:
        parts = byteranges(joined, response["Content-Type"])
        assert [data for _, data in parts] == [content[:10], content[100:]]


def test_a_file_shorter_than_its_stored_size_fails_loudly(tmp_path):
    short = stored_file(tmp_path, size=SIZE + 100)
    response = respond(short, Range="bytes=0-")
    with pytest.raises(OSError, match="shorter than its stored size"):
        b"".join(response.streaming_content)
    assert open_handles(short.path) == 0


def test_byte_range_len_and_content_range():
    assert len(ByteRange(10, 20)) == 10
    assert ByteRange(10, 20).content_range(100) == "bytes 10-19/100"


# Through nginx ----------------------------------------------------------------------------

NGINX_CONF = REPO / "docker" / "nginx.conf"
FILE_MTIME = 946684800  # 2000-01-01, unlike our Last-Modified
FILE_MTIME_HTTP = "Sat, 01 Jan 2000 00:00:00 GMT"


def download_config(media: Path) -> tuple[str, str]:
    """The parts of docker/nginx.conf that serve downloads, the alias pointed at `media`:
    (what goes in `http`, what goes in `server`)."""
    conf = NGINX_CONF.read_text()
    protected = conf_block(conf, "location /_protected/ {")
    assert "alias /data/media/;" in protected
    server = protected.replace("alias /data/media/;", f"alias {media}/;")
    server += "\n" + conf_block(conf, "location @range_not_satisfiable {")
    return conf_block(conf, "map $sent_http_content_range "), server


def test_nginx_location_serves_the_containers_media_root():
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    media_root = re.search(r"MEDIA_ROOT=(\S+)", dockerfile)[1]
    block = conf_block(NGINX_CONF.read_text(), "location /_protected/ {")
    assert re.search(r"^\s*internal;", block, re.M)
    assert f"alias {media_root.rstrip('/')}/;" in block


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def accel_stack(tmp_path):
    """nginx with docker/nginx.conf's download location in front of a WSGI app that answers
    with file_response in accel mode (as the download view does), plus the CORS headers
    django-cors-headers would add. Yields (port, stored file)."""
    require(NGINX is not None, "nginx is not installed (Debian: apt-get install nginx)")

    media = tmp_path / "media"
    stored = stored_file(media, name="items/7/ü data?.bin")
    # A file mtime unlike our Last-Modified shows whose validators nginx judges by.
    os.utime(stored.path, (FILE_MTIME, FILE_MTIME))

    def app(environ, start_response):
        response = file_response(WSGIRequest(environ), stored, accel_prefix=ACCEL)
        response["Access-Control-Allow-Origin"] = "https://maps.example.org"
        response["Access-Control-Expose-Headers"] = "content-range, etag"
        response["Vary"] = "origin"
        start_response(f"{response.status_code} {response.reason_phrase}", list(response.items()))
        return response

    upstream = make_server("127.0.0.1", 0, app, WSGIServer, _QuietHandler)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        yield from _nginx_in_front(tmp_path / "nginx", media, upstream.server_port, stored)
    finally:
        upstream.shutdown()
        upstream.server_close()


def _nginx_in_front(prefix: Path, media: Path, upstream_port: int, stored: StoredFile):
    http_part, server_part = download_config(media)
    server_part = f"location / {{ proxy_pass http://127.0.0.1:{upstream_port}; }}\n{server_part}"
    with running_nginx(prefix, http_part, server_part) as port:
        yield port, stored


def test_through_nginx(accel_stack):
    port, stored = accel_stack

    def fetch(method="GET", **headers):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request(method, "/api/v1/tree-items/1/download", headers=headers)
        response = connection.getresponse()
        content = response.read()
        connection.close()
        return response, content

    ours = {"ETag": f'"{ETAG}"', "Last-Modified": LAST_MODIFIED_HTTP}

    # The whole file, with our validators and headers, not nginx's.
    response, content = fetch(Origin="https://maps.example.org")
    assert (response.status, content) == (200, CONTENT)
    assert response.getheader("Content-Length") == str(SIZE)
    assert response.getheader("Content-Type") == "application/octet-stream"
    assert response.getheader("Content-Disposition") == 'attachment; filename="report.bin"'
    assert response.getheader("Cache-Control") == "private, no-cache"
    assert response.getheader("Access-Control-Allow-Origin") == "https://maps.example.org"
    assert response.getheader("Access-Control-Expose-Headers") == "content-range, etag"
    assert response.getheader("Vary") == "origin"
    for name, value in ours.items():
        assert response.headers.get_all(name) == [value]
    assert response.headers.get_all("Accept-Ranges") == ["bytes"]
    assert response.getheader("X-Accel-Redirect") is None

    # One range.
    response, content = fetch(Range="bytes=10-19")
    assert (response.status, content) == (206, CONTENT[10:20])
    assert response.getheader("Content-Range") == f"bytes 10-19/{SIZE}"
    assert response.getheader("ETag") == ours["ETag"]

    # Several ranges.
    response, content = fetch(Range="bytes=0-9,100-109")
    assert response.status == 206
    parts = byteranges(content, response.getheader("Content-Type"))
    assert [data for _, data in parts] == [CONTENT[:10], CONTENT[100:110]]
    assert [headers["Content-Range"] for headers, _ in parts] == [
        f"bytes 0-9/{SIZE}",
        f"bytes 100-109/{SIZE}",
    ]

    # Nothing satisfiable: the error shape, and the CORS headers once.
    response, content = fetch(Range="bytes=99999-")
    assert response.status == 416
    assert response.getheader("Content-Range") == f"bytes */{SIZE}"
    assert response.getheader("Content-Type") == "application/json"
    assert json.loads(content) == {
        "code": "range_not_satisfiable",
        "message": f"No requested range lies within the file, which is {SIZE} bytes long.",
    }
    assert response.headers.get_all("Access-Control-Allow-Origin") == ["https://maps.example.org"]
    assert response.headers.get_all("ETag") == [ours["ETag"]]

    # If-Range judged by our ETag and Last-Modified (the file's mtime is 2000-01-01).
    for if_range, status in [
        (ours["ETag"], 206),
        (LAST_MODIFIED_HTTP, 206),
        ('"stale"', 200),
        (f'W/"{ETAG}"', 200),
        (FILE_MTIME_HTTP, 200),
    ]:
        response, content = fetch(Range="bytes=10-19", **{"If-Range": if_range})
        assert (if_range, response.status) == (if_range, status)
        assert content == (CONTENT[10:20] if status == 206 else CONTENT)

    # HEAD: the headers of GET, no body.
    response, content = fetch("HEAD")
    assert (response.status, content) == (200, b"")
    assert response.getheader("Content-Length") == str(SIZE)
    assert response.getheader("ETag") == ours["ETag"]
    response, content = fetch("HEAD", Range="bytes=10-19")
    assert (response.status, content) == (206, b"")
    assert response.getheader("Content-Length") == "10"

    # Preconditions are Django's: nginx neither re-answers them nor refuses what passed.
    response, content = fetch(**{"If-None-Match": ours["ETag"]})
    assert (response.status, content) == (304, b"")
    assert response.getheader("ETag") == ours["ETag"]
    response, content = fetch(**{"If-Modified-Since": LAST_MODIFIED_HTTP})
    assert response.status == 304
    # The file's mtime exactly (what nginx's default `if_modified_since exact` would answer
    # 304 to), but earlier than our Last-Modified: modified.
    response, content = fetch(**{"If-Modified-Since": FILE_MTIME_HTTP})
    assert (response.status, content) == (200, CONTENT)
    response, content = fetch(Range="bytes=10-19", **{"If-Match": ours["ETag"]})
    assert (response.status, content) == (206, CONTENT[10:20])
    response, _ = fetch(**{"If-Match": '"stale"'})
    assert response.status == 412
