"""`hearth models list` with no server, answered from a cache that is trusted by `stat`.

Listing a home the validated way costs ~0.5 s on a small machine, nearly all of it importing
pydantic and building the settings and model.json schemas; the folder itself is read in a few
milliseconds. So, like git's index, the offline list keeps what it printed together with a
fingerprint of everything that printout depends on, and the next list with no server re-stats
those paths (no pydantic, no `hearth.models`): when every one is unchanged it prints the cached
rows, else it lists the slow way and writes a fresh cache. The cache can only make a list
faster, never different: anything unexpected (no file, bad JSON, other version, other home,
another environment, one changed byte of a model.json) means the slow path.

What a list depends on, and so the fingerprint (each path's mode, inode, device, size, mtime and
ctime in ns; ctime changes on every write and chmod and cannot be set back):

- the home (resolved), Hearth's version, this cache's format, the HEARTH_* environment (as a
  digest: it may hold a key), the source files of the listing code (an edited checkout) and the
  folders of the import path (an engine plugin installed or removed);
- settings.json (import_dirs), linked-files.json (files linked in place), logs/import-errors.json
  (files that were not imported) and, for each of those, whether the file still exists;
- models/ and every folder in it that the store would read, with each entry of that folder
  (model.json, model files, partial downloads, temp files): a new, removed, grown or edited file
  shows. A symlink also records its target's stat and real path;
- the paths a model reaches outside its own folder (a `file://` source, a `llama_model_path` or
  `mmproj` in a subfolder, an import_dirs folder), with their real paths.

Racy entries (git's word): a path changed in the same clock tick as the listing could change
again without its timestamps moving. A cache is written only if every timestamp it records is
older than the start of the listing minus `RACY_MARGIN_NS` (2 s covers coarse kernel clocks and
file systems that keep whole or even seconds), so right after a change the list stays slow
until the change is that old.

The cache is `<home>/.cache/models-list.json`: Hearth's own state, disposable, outside models/
(which is the user's). `HEARTH_NO_LIST_CACHE=1` neither reads nor writes it.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from hearth import __version__
from hearth.core import atomic

if TYPE_CHECKING:
    from hearth.services import Services

FORMAT = 1
CACHE_DIR = ".cache"
CACHE_FILE = "models-list.json"
DISABLE_ENV = "HEARTH_NO_LIST_CACHE"
RACY_MARGIN_NS = 2_000_000_000
MAX_BYTES = 8 << 20  # a cache larger than this is not read (a list of 1,000 models is ~200 KB)
#: The home's files a list reads (settings, linked files, import errors) and models/ itself.
HOME_FILES = ("settings.json", "linked-files.json", "logs/import-errors.json", "models")
#: Source folders (under the hearth package) whose modules shape a list.
CODE_DIRS = ("", "models", "services", "cli", "engines")
ROW_KEYS = ("id", "name", "format", "size", "status", "error")
PROBLEM_KEYS = ("path", "state", "error")

Rows = list[dict[str, Any]]
Key = list[int] | None


def cache_path(home: str) -> str:
    return os.path.join(home, CACHE_DIR, CACHE_FILE)


def enabled() -> bool:
    """False with HEARTH_NO_LIST_CACHE set (to anything but 0): lists always validate."""
    return os.environ.get(DISABLE_ENV, "0") in ("", "0")


class _Stats:
    """Stat keys of paths, remembering the newest timestamp seen (for the racy check)."""

    def __init__(self) -> None:
        self.newest = 0

    def key(self, st: os.stat_result) -> list[int]:
        self.newest = max(self.newest, st.st_mtime_ns, st.st_ctime_ns)
        return [st.st_mode, st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns]

    def of(self, path: str) -> Key:
        """The key of what `path` leads to (links followed), None where nothing is."""
        try:
            return self.key(os.stat(path))
        except (OSError, ValueError):
            return None

    def folder(self, path: str) -> list[Any] | None:
        """Each entry of a model folder: its lstat, plus target stat and real path for a link."""
        try:
            dirents = sorted(os.scandir(path), key=lambda d: d.name)
        except (OSError, ValueError):
            return None
        out: list[Any] = []
        for dirent in dirents:
            try:
                lkey = self.key(dirent.stat(follow_symlinks=False))
            except OSError:
                lkey = None
            link = None
            if dirent.is_symlink():
                link = [self.of(dirent.path), os.path.realpath(dirent.path)]
            out.append([dirent.name, lkey, link])
        return out


def _env_digest() -> str:
    """The HEARTH_* settings of this environment (they change what loads), as a digest."""
    items = sorted(
        (k, v)
        for k, v in os.environ.items()
        if k.startswith("HEARTH_") and k not in ("HEARTH_HOME", DISABLE_ENV)
    )
    if not items:
        return ""
    import hashlib

    return hashlib.blake2b(json.dumps(items).encode(), digest_size=16).hexdigest()


def _code(stats: _Stats) -> list[Any]:
    """The listing code: Hearth's modules that validate a model (an edited checkout shows), and
    the import path's folders, where installing or removing a package (an engine plugin, which
    decides whether a model's `engine` is valid) adds or removes a folder."""
    places = [[p, stats.of(p)] for p in sys.path[1:] if p]  # [0]: the script's or the cwd
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out: list[Any] = []
    for sub in CODE_DIRS:
        folder = os.path.join(package, sub)
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith(".py"))
        except OSError:
            names = []
        out += [[sub, n, stats.of(os.path.join(folder, n))] for n in names]
    return [places, out]


def fingerprint(home: str, outside: Iterable[str], problems: Iterable[str]) -> tuple[Any, int]:
    """(the fingerprint, the newest timestamp in it) of a home's list; see the module doc."""
    stats = _Stats()
    files = [[name, stats.of(os.path.join(home, name))] for name in HOME_FILES]
    models = os.path.join(home, "models")
    folders: list[Any] = []
    try:
        dirents = sorted(os.scandir(models), key=lambda d: d.name)
    except (OSError, ValueError):
        dirents = []
    for dirent in dirents:
        if dirent.name.startswith(".") or not dirent.is_dir():
            continue  # what the store's scan skips
        folders.append([dirent.name, stats.of(dirent.path), stats.folder(dirent.path)])
    away = [[p, stats.of(p), os.path.realpath(p)] for p in outside]
    gone = [[p, os.path.lexists(p)] for p in problems]
    head = [FORMAT, __version__, home, _env_digest(), _code(stats)]
    return [head, files, folders, away, gone], stats.newest


def _checked_rows(rows: Any, keys: tuple[str, ...]) -> Rows | None:
    """Rows of plain values under `keys` only, or None for anything else."""
    if not isinstance(rows, list):
        return None
    for item in rows:
        if not isinstance(item, dict) or set(item) - set(keys):
            return None
        for k, v in item.items():
            plain = isinstance(v, str) or v is None or (type(v) is int and k == "size")
            if not plain or (k in ("id", "path") and not isinstance(v, str)):
                return None
    return rows


def _read(path: str) -> Any:
    """The cache's JSON, refusing anything but a regular file of sane size (a FIFO or a link
    to a device would block or never end)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_BYTES:
            return None
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    finally:
        os.close(fd)
    return json.loads(data) if len(data) <= MAX_BYTES else None


def load(home: str) -> tuple[Rows, Rows] | None:
    """(models, problems) as last listed, if nothing they depend on changed since; else None."""
    if not enabled():
        return None
    try:
        data = _read(cache_path(home))
        if not isinstance(data, dict):
            return None
        outside, problems = data.get("outside"), data.get("problems")
        models = _checked_rows(data.get("models"), ROW_KEYS)
        problems = _checked_rows(problems, PROBLEM_KEYS)
        if models is None or problems is None or not isinstance(outside, list):
            return None
        if not all(isinstance(p, str) for p in outside):
            return None
        now, _ = fingerprint(home, outside, [p["path"] for p in problems])
        return (models, problems) if data.get("fingerprint") == now else None
    except (OSError, ValueError, RecursionError, TypeError, KeyError):
        return None


def save(home: str, started_ns: int, models: Rows, problems: Rows, outside: list[str]) -> bool:
    """Write the cache for a list that began at `started_ns`, unless a path it depends on is
    racy (see the module doc). True when written; a failure to write is no error."""
    if not enabled():
        return False
    problem_paths = [str(p.get("path")) for p in problems]
    now, newest = fingerprint(home, outside, problem_paths)
    if newest >= started_ns - RACY_MARGIN_NS:
        return False
    body = {
        "fingerprint": now,
        "outside": outside,
        "models": [{k: m.get(k) for k in ROW_KEYS if k in m} for m in models],
        "problems": [{k: p.get(k) for k in PROBLEM_KEYS if k in p} for p in problems],
    }
    path = cache_path(home)
    try:  # not durable: a cache lost to a power cut costs one slow list, never a wrong one
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic.write_json(path, body, compact=True, durable=False)
    except (OSError, ValueError, TypeError):
        return False
    return True


def outside_paths(services: Services) -> list[str]:
    """Paths a list read outside the models' own folders, to fingerprint with their real paths:
    each model's files in a subfolder or elsewhere (linked in place), a `llama_model_path` or
    `mmproj` it names, and the import_dirs folders (where linked files may live)."""
    out = [str(d) for d in services.settings.import_dirs]
    for entry in services.store.list():
        if entry.info is None:
            continue
        named: list[Any] = [entry.folder / s.filename for s in entry.info.sources]
        named += [_url_path(s.url) for s in entry.info.sources if _url_path(s.url)]
        params = entry.info.engine_parameters
        for key in ("llama_model_path", "mmproj"):
            value = params.get(key)
            if isinstance(value, str) and value and "\x00" not in value:
                named.append(entry.folder / value)
        for path in [*named, *entry.files, *entry.external, *entry.partial]:
            if os.path.dirname(str(path)) != str(entry.folder):
                out.append(str(path))
    return sorted(set(out))


def _url_path(url: str | None) -> str:
    """The file a `file://` source names ("" for any other URL), as the store reads it."""
    if not url or not url.startswith("file://"):
        return ""
    from urllib.parse import unquote, urlparse

    return unquote(urlparse(url).path)
