"""The web page for people: `index.html` at `/` (for browsers) and its files at /static/web/.

The files live in the package (`hearth/web/`), so the page needs nothing from the internet and
nothing is built at install time. The page's own ES modules (`js/`) and the pinned third-party
files they import (`vendor/`, copied from npm by `web-dev/vendor.sh`) are bundled at development
time by `web-dev/build.sh` (esbuild) into `bundle/`, which is committed: the first view's code
arrives in a few requests instead of a dozen. Only `bundle/`, the HTML, the CSS and the icon are
served; a test checks that `bundle/` was built from the sources as they are.

Every response carries a strict Content-Security-Policy: scripts, styles and requests only from
this server, images also from `data:`/`blob:` URLs (attached pictures), no inline scripts, no
frames (and `X-Frame-Options: DENY`, which older browsers read instead of the CSP's
`frame-ancestors`: no other site can frame the page to trick a click). Model output is a
stranger's data; even if a sanitiser failed, an injected script or a
beacon to another host would be refused by the browser.

Files are read once and kept in memory with a gzip copy (the page is about 100 KB compressed;
compressing here rather than in a middleware keeps /v1 a byte-for-byte pass-through). The
bundle's chunks carry a hash of their content in their name and are cached for a year; the rest
(the HTML, the CSS, the two entry scripts) is revalidated with its ETag on each load (a 304 on
loopback costs well under a millisecond).

`/` is answered without the API key when a browser asks for HTML (`is_page_request`): the page
holds no data, and it must load before it can ask the user for the key.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from fastapi import APIRouter, Request, Response

from hearth.core.errors import NotFound

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
PREFIX = "/static/web/"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
    ".LICENSE": "text/plain; charset=utf-8",
}
_COMPRESSIBLE = ("text/", "image/svg+xml")
_SERVED = ("index.html", "app.css", "icon.svg", "bundle/")  # js/ and vendor/ are the sources
_HASHED = re.compile(r"^bundle/.+-[A-Z0-9]{8}\.js$")  # esbuild's chunk names: content-hashed
_YEAR = "public, max-age=31536000, immutable"
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",  # frame-ancestors 'none' for browsers that predate CSP 2
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class WebFile:
    """One file of the page, ready to send: its bytes, a gzip copy when that is smaller."""

    body: bytes
    gzipped: bytes | None
    media_type: str
    etag: str
    cache: str


def wants_html(accept: str) -> bool:
    """Does this Accept header ask for a page (a browser) rather than any answer (a probe)?"""
    for item in accept.lower().split(","):
        media, _, params = item.strip().partition(";")
        if media.strip() in ("text/html", "application/xhtml+xml") and params.strip() != "q=0":
            return True
    return False


def is_page_request(method: str, path: str, accept: str) -> bool:
    """A browser opening the page at `/`: served without the API key (it holds no data)."""
    return path == "/" and method in ("GET", "HEAD") and wants_html(accept)


def _media_type(name: str) -> str | None:
    for suffix, media in _TYPES.items():
        if name.endswith(suffix):
            return media
    return None


def _load(entry: Traversable, relative: str) -> WebFile | None:
    media = _media_type(relative)
    if media is None:
        return None
    body = entry.read_bytes()
    packed = gzip.compress(body, 9, mtime=0) if media.startswith(_COMPRESSIBLE) else None
    return WebFile(
        body=body,
        gzipped=packed if packed is not None and len(packed) < len(body) else None,
        media_type=media,
        etag='"' + hashlib.sha256(body).hexdigest()[:20] + '"',
        cache=_YEAR if _HASHED.match(relative) else "no-cache",
    )


def _with_preloads(index: WebFile, names: list[str]) -> WebFile:
    """index.html with a modulepreload link for every module, where its comment says.

    Without them the browser finds the bundle's chunks only after it has run the module that
    imports them: one round trip and one parse more before the page is usable.
    """
    links = "".join(f'  <link rel="modulepreload" href="{PREFIX}{name}">\n' for name in names)
    html = index.body.decode().replace("  <!-- modulepreload:", links + "  <!-- modulepreload:", 1)
    body = html.encode()
    return WebFile(
        body=body,
        gzipped=gzip.compress(body, 9, mtime=0),
        media_type=index.media_type,
        etag='"' + hashlib.sha256(body).hexdigest()[:20] + '"',
        cache=index.cache,
    )


def _walk(folder: Traversable, prefix: str = "") -> dict[str, WebFile]:
    found: dict[str, WebFile] = {}
    for entry in folder.iterdir():
        name = prefix + entry.name
        if entry.is_dir():
            if not entry.name.startswith(("_", ".")):
                found.update(_walk(entry, name + "/"))
        elif name.startswith(_SERVED) and (loaded := _load(entry, name)) is not None:
            found[name] = loaded
    return found


@functools.cache
def web_files() -> dict[str, WebFile]:
    """Every servable file of the page, by path relative to the package folder; read once."""
    files = _walk(resources.files("hearth.web"))
    # imported on first use, not at start: highlight.js when code is first shown, the Models
    # view (and its editor) when it is first opened; early.js has a script tag of its own
    lazy = ("bundle/highlight-", "bundle/models-", "bundle/early.js")
    modules = [n for n in files if n.endswith(".js") and not n.startswith(lazy)]
    modules.sort(key=lambda n: len(files[n].body))  # the first view's small ones before Markdown
    files["index.html"] = _with_preloads(files["index.html"], modules)
    return files


def file_response(request: Request, item: WebFile, vary: str = "Accept-Encoding") -> Response:
    """The file with its validators: 304 when the browser's copy is current, gzip if accepted."""
    headers = {**_HEADERS, "ETag": item.etag, "Cache-Control": item.cache, "Vary": vary}
    if item.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    body = item.body
    if item.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
        body = item.gzipped
        headers["Content-Encoding"] = "gzip"
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(body))
        return Response(status_code=200, headers=headers, media_type=item.media_type)
    return Response(body, headers=headers, media_type=item.media_type)


def page_response(request: Request) -> Response:
    """index.html, as `/` answers a browser (`/` answers by Accept: caches must know)."""
    return file_response(request, web_files()["index.html"], vary="Accept, Accept-Encoding")


@router.api_route(PREFIX + "{path:path}", methods=["GET", "HEAD"])
async def web_file(path: str, request: Request) -> Response:
    """One of the page's files (must be routed before the docs' /static mount)."""
    item = web_files().get(path)
    if item is None or path == "index.html":
        raise NotFound(f"The web page has no file {path[:100]!r}. Open the page at '/'.")
    return file_response(request, item)
