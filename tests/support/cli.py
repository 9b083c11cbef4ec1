"""Run the real `hearth` command line in this process and read what it printed.

The same interface as Click's test runner (the CLI was once Click-based): `invoke(main, args,
env=..., input=...)` gives the exit code and the output, stdout and stderr together, as a
terminal would show them. `main` is `hearth.cli.main.main`, the console script's own entry.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass


@dataclass
class Result:
    exit_code: int
    output: str


@contextlib.contextmanager
def _environment(changes: Mapping[str, str | None]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in changes}
    try:
        for name, value in changes.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class CliRunner:
    def __init__(self, env: Mapping[str, str | None] | None = None) -> None:
        self.env = dict(env or {})

    def invoke(
        self,
        main: Callable[[list[str]], int],
        args: list[str],
        env: Mapping[str, str | None] | None = None,
        input: str | None = None,
    ) -> Result:
        out = io.StringIO()
        stdin = io.StringIO(input or "")
        saved_stdin = sys.stdin
        with _environment({**self.env, **(env or {})}):
            sys.stdin = stdin
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                    try:
                        code = main(list(args))
                    except SystemExit as exc:  # argparse: --help, --version, usage errors
                        code = exc.code if isinstance(exc.code, int) else int(bool(exc.code))
            finally:
                sys.stdin = saved_stdin
        return Result(code, out.getvalue())
