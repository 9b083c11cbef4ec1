"""A remote MCP server's secrets kept out of what Hearth shows and logs of its failures (issue 26).

Why: hosted MCP servers' addresses often carry a key in their path or query
(`https://mcp.example.com/<key>/sse`, `...?api_key=...`), and their `headers` a bearer token.
`GET /v1/mcp/servers` leaves `url` and `headers` out, but an error's text does not: httpx
names the whole URL (`Client error '401 Unauthorized' for url '...?key=...'`). Every error text
and stderr line of a server goes through `Redactor.clean` before it is stored, raised or
logged: the address (in any form it is written) becomes `<url of 'name'>`, and each piece
of it or of a header that could be a secret becomes `<secret of 'name'>`. The SDK's own HTTP
loggers say the URL too (at DEBUG): `RedactingFilter` cleans their records of every live
server's secrets.
"""

from __future__ import annotations

import logging
import re
import weakref
from urllib.parse import parse_qsl, unquote, urlsplit

from hearth.mcp.config import ServerConfig

#: Shorter pieces are not secrets, and replacing them would garble the text ("1", "sse").
MIN_SECRET = 6
#: A path segment this long may be a key (`/v1/<key>/sse`); a shorter one is a word ("mcp").
MIN_PATH_SECRET = 16
_URLS = re.compile(r"""[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'"<>`]+""")
#: Every server's redactor while its host lives (for the SDK's loggers).
_LIVE: weakref.WeakSet[Redactor] = weakref.WeakSet()


def _pieces(config: ServerConfig) -> list[str]:
    """What of the address and headers could be a secret, as written and percent-decoded."""
    found: list[str] = []
    url = config.url
    if url:
        parts = urlsplit(url)
        found += [url, parts.query, parts.password or "", parts.username or ""]
        found += [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
        found += [s for s in parts.path.split("/") if len(s) >= MIN_PATH_SECRET]
    for value in config.headers.values():
        found += [value, *value.split()[1:]]  # the whole value; a token after its scheme
    both = {*found, *(unquote(piece) for piece in found)}
    return sorted((p for p in both if len(p) >= MIN_SECRET), key=len, reverse=True)


class Redactor:
    """One server's secrets, and the text cleaned of them."""

    def __init__(self, config: ServerConfig) -> None:
        self.url_mark = f"<url of {config.name!r}>"
        self.secret_mark = f"<secret of {config.name!r}>"
        self.url = config.url
        self.pieces = _pieces(config)
        netloc = urlsplit(config.url).netloc if config.url else ""
        self.netloc = netloc.rsplit("@", 1)[-1].lower()
        if self.pieces or self.netloc:
            _LIVE.add(self)

    def _url(self, match: re.Match[str]) -> str:
        """An address on the server's own host (the configured one, a redirect, a message
        endpoint) is named, never shown."""
        found = match.group(0)
        try:
            netloc = urlsplit(found).netloc.rsplit("@", 1)[-1].lower()
        except ValueError:
            return found
        return self.url_mark if netloc == self.netloc else found

    def clean(self, text: str) -> str:
        if not self.pieces and not self.netloc:
            return text
        if self.netloc:
            text = _URLS.sub(self._url, text)
        for piece in self.pieces:
            text = text.replace(piece, self.secret_mark)
        return text


class RedactingFilter(logging.Filter):
    """A log record of the SDK's HTTP transports, cleaned of every live server's secrets
    (its message and its traceback) before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        redactors = list(_LIVE)
        if not redactors:
            return True
        text = record.getMessage()
        # a server whose own URL is in the text names it (two may share a host)
        redactors.sort(key=lambda redactor: redactor.url not in text)
        trace = logging.Formatter().formatException(record.exc_info) if record.exc_info else None
        for redactor in redactors:
            text = redactor.clean(text)
            trace = redactor.clean(trace) if trace else trace
        record.msg, record.args = text, None
        if trace:
            record.exc_text = trace
        return True
