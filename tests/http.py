"""A TCP proxy that counts the bytes a server sends, for tests that check what crossed the
wire (e.g. that /vsicurl/ fetched a window, not the file)."""

import socket
import threading


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
