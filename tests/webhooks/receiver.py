"""A real HTTP receiver for the webhook tests: a ThreadingHTTPServer on 127.0.0.1 in a
thread, answering each POST as the test scripts it and keeping what it was sent."""

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

from tests.geoconvert.reliability.helpers import wait_until  # noqa: F401  (the tests' wait)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict = field(default_factory=dict)
    # Held until the test sets it (a receiver that does not answer).
    hold: threading.Event | None = None


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def verified(self, secret: str) -> dict:
        """The payload, once standardwebhooks has checked its signature."""
        return Webhook(secret).verify(self.body, self.headers)


class Receiver:
    def __init__(self):
        self.received: list[Received] = []
        self.replies: list[Reply] = []  # the next answers, in order; then `default`
        self.default = Reply()
        self.holds: list[threading.Event] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                record = Received(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
                reply = receiver._take(record)
                if reply.hold is not None:
                    reply.hold.wait(60)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the sender gave up (a timeout, a killed worker)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _take(self, record: Received) -> Reply:
        with self._lock:
            self.received.append(record)
            return self.replies.pop(0) if self.replies else self.default

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def hold(self) -> Reply:
        """A reply that waits until release_all()."""
        event = threading.Event()
        self.holds.append(event)
        return Reply(hold=event)

    def release_all(self) -> None:
        for event in self.holds:
            event.set()

    def of_type(self, event_type: str) -> list[Received]:
        return [r for r in list(self.received) if r.json.get("type") == event_type]

    def start(self) -> "Receiver":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release_all()
        self.server.shutdown()
        self.server.server_close()
