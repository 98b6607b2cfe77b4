"""HTTP plumbing for the tests and benchmarks: a TCP proxy that counts the bytes a server
sends (that /vsicurl/ fetched a window, not the file), and reading blocks of
docker/nginx.conf to run them in a real nginx."""

import re
import socket
import threading


def conf_block(conf: str, opening: str) -> str:
    """The block of an nginx config that starts with `opening` ("location /x/ {"), through
    its closing brace; comments removed."""
    conf = re.sub(r"(?m)^\s*#[^\n]*", "", conf)
    start, depth = conf.index(opening), 0
    for end in range(start, len(conf)):
        depth += {"{": 1, "}": -1}.get(conf[end], 0)
        if conf[end] == "}" and depth == 0:
            return conf[start : end + 1]
    raise ValueError(f"unbalanced braces after {opening!r}")


class CountingProxy:
    """Listens on a loopback port of its own and forwards every connection to `upstream`
    (host, port), counting the bytes that flow back to the client."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.sent_to_client = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        with self._lock:
            self.sent_to_client = 0

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, counted: bool) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
                if counted:
                    with self._lock:
                        self.sent_to_client += len(chunk)
        except OSError:
            pass
        finally:
            for end in (source, target):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
