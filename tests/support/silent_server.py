"""A loopback server that accepts connections and never answers (a stalled Hub or file host).

Or, with `reply`, answers every connection with those raw bytes (hostile status lines and
headers a real HTTP server library would refuse to send). Closing it drops every connection, so
a client blocked in a read wakes up and the test can end cleanly.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class SilentServer:
    """`with SilentServer() as srv:`; `srv.url("/x.gguf")`; `srv.accepted` counts connections."""

    def __init__(self, reply: bytes | None = None) -> None:
        self.reply = reply
        self.accepted = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting and drop every connection (wakes any client blocked reading)."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._thread.join(timeout=10)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self._conns.append(conn)
            if self.reply is not None:
                threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        """Read the request head, send the raw reply, close."""
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            conn.sendall(self.reply or b"")
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            return
