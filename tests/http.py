"""HTTP plumbing for the tests and benchmarks: a TCP proxy that counts the bytes a server
sends (that /vsicurl/ fetched a window, not the file), and reading blocks of
docker/nginx.conf to run them in a real nginx."""

import os
import re
import shutil
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

NGINX = shutil.which("nginx") or next(
    (path for path in ("/usr/sbin/nginx",) if os.access(path, os.X_OK)), None
)


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


def conf_directive(conf: str, name: str) -> str:
    """The first `name ...;` directive of an nginx config (it may span lines)."""
    conf = re.sub(r"(?m)^\s*#[^\n]*", "", conf)
    match = re.search(rf"(?m)^\s*{re.escape(name)}\s[^;]*;", conf)
    if match is None:
        raise ValueError(f"no {name} directive")
    return match[0].strip()


def location_in_front(location: str, upstream: str) -> str:
    """A location block of docker/nginx.conf (`proxy_pass http://tagger_backend`) pointed at
    `upstream` (host:port), with every other path passed on there too: a server part for
    running_nginx."""
    assert "proxy_pass http://tagger_backend;" in location
    return "\n".join(
        [
            location.replace("http://tagger_backend", f"http://{upstream}"),
            f"location / {{ proxy_pass http://{upstream}; proxy_set_header Host $http_host; }}",
        ]
    )


@contextmanager
def running_nginx(prefix: Path, http_part: str, server_part: str):
    """A real nginx (no daemon, no master process) with `http_part` in its http block and
    `server_part` in a server listening on a free loopback port, which it yields. Its
    temporary files and logs stay under `prefix`."""
    from tests.conftest import free_port

    port = free_port()
    (prefix / "logs").mkdir(parents=True)
    (prefix / "nginx.conf").write_text(
        f"""
        master_process off;
        pid {prefix}/nginx.pid;
        error_log {prefix}/logs/error.log warn;
        events {{ worker_connections 64; }}
        http {{
            access_log off;
            client_body_temp_path {prefix}/client_body;
            proxy_temp_path {prefix}/proxy;
            fastcgi_temp_path {prefix}/fastcgi;
            uwsgi_temp_path {prefix}/uwsgi;
            scgi_temp_path {prefix}/scgi;
            default_type text/plain;
            {http_part}
            server {{
                listen 127.0.0.1:{port};
                {server_part}
            }}
        }}
        """
    )
    with (prefix / "logs" / "output.log").open("wb") as output:
        nginx = subprocess.Popen(
            [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
             "-e", str(prefix / "logs" / "error.log"), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_for_port(port, nginx, prefix / "logs")
        yield port
    finally:
        nginx.terminate()
        try:
            nginx.wait(timeout=10)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait()


def _wait_for_port(port: int, process: subprocess.Popen, logs: Path) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                text = "\n".join(path.read_text(errors="replace") for path in logs.iterdir())
                raise RuntimeError(f"nginx did not start:\n{text}") from None
            time.sleep(0.05)
