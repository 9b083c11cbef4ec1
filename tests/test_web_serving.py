"""The web page as HTTP sees it (no browser): served from the package at `/` and /static/web/,
with a strict CSP, validators and gzip; open without the API key while everything else still
needs it; and no file of it names a host other than the one it came from."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.server import ThreadedServer

from hearth.core.config import load_settings
from hearth.server.web import web_files
from hearth.services import Services

KEY = "k3y-0123456789abcdef"
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
WEB = Path(__file__).parent.parent / "src" / "hearth" / "web"


@pytest.fixture
def srv(home: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as server:
        yield server


def test_root_gives_browsers_the_page_and_probes_the_liveness_text(srv: ThreadedServer) -> None:
    with srv.http() as http:
        page = http.get("/", headers=HTML)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="/static/web/bundle/main.js">' in page.text
        # the first view's chunks and Markdown's are preloaded (the server lists them), but
        # highlight.js and the Models view load when first needed
        assert '<link rel="modulepreload" href="/static/web/bundle/markdown-' in page.text
        assert "highlight-" not in page.text and "bundle/models-" not in page.text
        # early.js is a classic script ahead of everything: it starts the first view's requests
        # while the modules load, so it is neither deferred nor preloaded as a module
        early = page.text.index('<script src="/static/web/bundle/early.js"></script>')
        assert early < page.text.index('rel="stylesheet"') < page.text.index("modulepreload")
        assert 'modulepreload" href="/static/web/bundle/early.js' not in page.text
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "connect-src 'self'" in csp
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert http.get("/").text == "Ollama is running"
        # one URL, two answers chosen by Accept: a cache must not hand one to the other
        assert "accept" in [v.strip().lower() for v in page.headers["vary"].split(",")]
        assert http.get("/").headers["vary"].lower() == "accept"


def test_files_have_types_validators_and_gzip(srv: ThreadedServer) -> None:
    with srv.http() as http:
        js = http.get("/static/web/bundle/main.js", headers={"Accept-Encoding": "gzip"})
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert (
            js.headers["content-encoding"] == "gzip" and js.headers["cache-control"] == "no-cache"
        )
        again = http.get(
            "/static/web/bundle/main.js", headers={"If-None-Match": js.headers["etag"]}
        )
        assert again.status_code == 304 and again.content == b""
        css = http.get("/static/web/app.css")
        assert css.headers["content-type"].startswith("text/css")
        vendor = next(p for p in web_files() if p.startswith("bundle/markdown-"))
        cached = http.get(f"/static/web/{vendor}")
        assert "immutable" in cached.headers["cache-control"]
        raw = http.get(f"/static/web/{vendor}", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in raw.headers
        assert cached.headers["content-encoding"] == "gzip" and cached.content == raw.content
        assert http.get("/static/web/nope.js").status_code == 404
        assert http.get("/static/web/../server/web.py").status_code == 404
        assert http.get("/static/web/__init__.py").status_code == 404
        # the sources of the bundle are in the package, but only the bundle is served
        assert http.get("/static/web/js/main.js").status_code == 404
        assert http.get("/static/web/vendor/marked.LICENSE").status_code == 404
        # the docs' files are still served beside the page's
        assert http.get("/static/swagger-ui/swagger-ui.css").status_code == 200


def test_the_page_opens_without_the_key_and_nothing_else_does(home: Path) -> None:
    settings = load_settings(home=home, env={"HEARTH_API_KEY": KEY})
    with ThreadedServer(Services.create(settings)) as server, server.http() as http:
        assert http.get("/", headers=HTML).status_code == 200
        assert http.get("/static/web/bundle/main.js").status_code == 200
        assert http.get("/").status_code == 401  # the probe, and every API route, need the key
        assert http.get("/v1/models").status_code == 401
        assert http.get("/v1/threads").status_code == 401
        assert http.post("/", headers=HTML).status_code in (401, 405)
        ok = http.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200


def test_a_link_from_another_site_opens_the_page_but_not_the_api(srv: ThreadedServer) -> None:
    nav = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    with srv.http() as http:
        assert http.get("/", headers={**HTML, **nav}).status_code == 200
        assert http.get("/v1/models", headers={**HTML, **nav}).status_code == 403


def test_every_file_is_shipped_and_names_no_other_host() -> None:
    files = web_files()
    assert {"index.html", "app.css", "icon.svg", "bundle/main.js", "bundle/early.js"} <= set(
        files
    )
    bundle = {p.relative_to(WEB).as_posix() for p in (WEB / "bundle").glob("*.js")}
    assert bundle <= set(files)
    assert not any(name.startswith(("js/", "vendor/")) for name in files)
    for name in ("marked", "dompurify", "highlight.js"):
        assert (WEB / "vendor" / f"{name}.LICENSE").is_file()
    # Nothing served loads from elsewhere: every src/href/import is a path on this server.
    for name, item in files.items():
        if not name.endswith((".html", ".js", ".css")):
            continue
        text = item.body.decode()
        assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", text), name
        assert not re.search(r"""\bimport\b[^;]*["'](?:https?:)?//""", text), name
        if name.endswith((".css", ".html")):  # (highlight.js's grammars say "@import")
            assert "@import" not in text and "url(http" not in text, name


def test_the_bundle_was_built_from_the_sources_as_they_are() -> None:
    """bundle/ is committed output of web-dev/build.sh. Its SOURCES.sha256 is the digest of
    every input (`sha256sum` of the modules, the vendored files, the build script and the npm
    lock, by path from the repository root, sorted, hashed again); FILES.sha256 lists every
    file built. A source changed without a rebuild, or a built file left out of a commit or
    edited by hand, fails here rather than in a browser."""
    root = WEB.parent.parent.parent
    inputs = [
        *WEB.glob("js/*.js"),
        *WEB.glob("vendor/*.js"),
        root / "web-dev" / "build.sh",
        root / "web-dev" / "package-lock.json",
    ]
    lines = sorted((p.relative_to(root).as_posix(), sha256_of(p)) for p in inputs)
    digest = hashlib.sha256("".join(f"{h}  {p}\n" for p, h in lines).encode()).hexdigest()
    rebuild = "run web-dev/build.sh (Node, development time only) and commit all of bundle/"
    assert digest == (WEB / "bundle" / "SOURCES.sha256").read_text().strip(), (
        f"src/hearth/web/js, vendor or the build changed since the page was bundled: {rebuild}"
    )
    manifest = (WEB / "bundle" / "FILES.sha256").read_text().splitlines()
    listed = {name: digest for digest, name in (line.split("  ", 1) for line in manifest)}
    built = {p.name: sha256_of(p) for p in (WEB / "bundle").glob("*.js")}
    assert built == listed, f"bundle/ is not what web-dev/build.sh wrote: {rebuild}"
    for name in built:  # every chunk a file imports is there
        text = (WEB / "bundle" / name).read_text()
        for imported in re.findall(r"""["']\./([\w.-]+\.js)["']""", text):
            assert imported in built, f"bundle/{name} imports {imported}, which is missing"
    assert (WEB / "bundle" / "early.js").read_bytes() == (WEB / "js" / "early.js").read_bytes()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_vendored_files_match_the_pinned_versions() -> None:
    lock = (Path(__file__).parent.parent / "web-dev" / "package-lock.json").read_text()
    vendor_js = (WEB / "js" / "vendor.js").read_text()
    for package, stem in (
        ("marked", "marked"),
        ("dompurify", "purify"),
        ("@highlightjs/cdn-assets", "highlight"),
    ):
        match = re.search(
            rf'"node_modules/{re.escape(package)}":\s*{{\s*"version":\s*"([^"]+)"', lock
        )
        assert match, package
        assert f"{stem}-{match.group(1)}" in vendor_js, package
        assert any(
            p.name.startswith(f"{stem}-{match.group(1)}") for p in (WEB / "vendor").iterdir()
        )
