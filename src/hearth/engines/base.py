"""Small helpers every engine kind shares: a log ring, redaction of secrets, a free port."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable, Mapping

LOG_TAIL_BYTES = 16 * 1024
_SECRET_NAME = re.compile(r"(api[_-]?key|token|secret|passw(or)?d|auth|credential)", re.I)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+")
REDACTED = "***"


class LogRing:
    """The last `capacity` bytes of an engine's output, so errors can quote the engine itself."""

    def __init__(self, capacity: int = LOG_TAIL_BYTES) -> None:
        self.capacity = capacity
        self._buf = bytearray()
        self.total = 0  # bytes ever written: a cheap "is the engine making progress" signal

    def write(self, data: bytes) -> None:
        self.total += len(data)
        self._buf += data
        if len(self._buf) > self.capacity:
            del self._buf[: len(self._buf) - self.capacity]

    def tail(self, max_bytes: int | None = None) -> str:
        data = bytes(self._buf if max_bytes is None else self._buf[-max_bytes:])
        text = data.decode("utf-8", errors="replace")
        if max_bytes is not None and len(self._buf) > max_bytes and "\n" in text:
            text = text.split("\n", 1)[1]  # drop the partial first line
        return text


def redact_args(args: Iterable[str]) -> list[str]:
    """A command line safe to log: values of secret-looking flags become ***."""
    out: list[str] = []
    hide_next = False
    for arg in args:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        if arg.startswith("-") and _SECRET_NAME.search(arg):
            if "=" in arg:
                out.append(arg.split("=", 1)[0] + "=" + REDACTED)
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(_BEARER.sub(r"\1" + REDACTED, arg))
    return out


def looks_secret(name: str) -> bool:
    """True for a variable or flag name that usually holds a secret (API_KEY, TOKEN, ...)."""
    return _SECRET_NAME.search(name) is not None


def redact_env(env: Mapping[str, str]) -> dict[str, str]:
    """An environment safe to log: values of secret-looking variables become ***."""
    return {k: (REDACTED if _SECRET_NAME.search(k) else v) for k, v in env.items()}


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """Remove known secret values (e.g. an API key read from the environment) from text."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return _BEARER.sub(r"\1" + REDACTED, text)


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS just said is free; the engine binds it a moment later (tiny race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
