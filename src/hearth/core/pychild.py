"""Python child processes that run Hearth's installed code, never a file that happens to lie in
the folder `hearth serve` was started from.

`python -m module` puts the current directory first on `sys.path`, so an `xllamacpp.py` (or a
`hearth/` folder, a `pip.py`) in that folder would run inside the child: start Hearth in a
downloaded project or in /tmp, and whoever put the file there runs code in the engine. Every
Python child Hearth starts itself (the engine worker, pip for the starter model) therefore runs

- with `-P` (Python 3.11+): no current directory or script folder on `sys.path`;
- with `-s`: no user site (~/.local/lib/pythonX.Y/site-packages), unless what the child imports
  was installed there (`pip install --user hearth`): then the child needs it, as Hearth does;
- in a working directory Hearth chose (an engine's private temporary folder, the starter's
  download folder), never the user's;
- with the user's PYTHONPATH kept (`-I` would drop it; it is the user's own choice, and a
  checkout run with `PYTHONPATH=src` must import the same Hearth in its children), each entry
  made absolute against the server's own current directory so it means in the child what it
  meant in the server, and empty entries dropped: an empty entry means "the current directory"
  and is nearly always a slip (`PYTHONPATH=$PYTHONPATH:/x` with nothing set before).

A plugin's engine kind builds its own command line (engines/registry.py); Hearth cannot add flags
to it, but it still starts in the private folder with the cleaned PYTHONPATH (engines/process.py).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import site
import sys
from collections.abc import Mapping


def python_command(module: str, *needs: str, python: str | None = None) -> list[str]:
    """`[python, -s, -P, -m, module]` (python: this interpreter unless given); `-s` is left
    out when a top-level package the child imports (`needs`, default the module's own) lives
    in the user site."""
    wanted = needs or (module.partition(".")[0],)
    flags = ["-P"] if _in_user_site(tuple(wanted)) else ["-s", "-P"]
    return [python or sys.executable, *flags, "-m", module]


@functools.cache
def _in_user_site(names: tuple[str, ...]) -> bool:
    """Does any of these top-level packages load from the user site? (A path lookup, once.)"""
    if not site.ENABLE_USER_SITE:
        return False  # the user site is off here (a venv, -s): the child loses nothing
    user = os.path.realpath(site.getusersitepackages())
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        places = list(spec.submodule_search_locations or []) if spec is not None else []
        if spec is not None and spec.origin:
            places.append(spec.origin)
        if any(os.path.realpath(p).startswith(user + os.sep) for p in places):
            return True
    return False


def child_env(env: Mapping[str, str], cwd: str | None = None) -> dict[str, str]:
    """`env` with PYTHONPATH's entries made absolute against `cwd` (default: this process's
    current directory) and empty entries dropped; without PYTHONPATH, `env` as it is."""
    out = dict(env)
    value = out.get("PYTHONPATH")
    if value is None:
        return out
    try:
        base = cwd if cwd is not None else os.getcwd()
    except OSError:  # the current directory was removed: only absolute entries still mean one
        base = None
    entries = [
        os.path.join(base, p) if base is not None else p
        for p in value.split(os.pathsep)
        if p and (base is not None or os.path.isabs(p))
    ]
    if entries:
        out["PYTHONPATH"] = os.pathsep.join(os.path.normpath(p) for p in entries)
    else:
        del out["PYTHONPATH"]
    return out
