"""A stdio MCP server that answers only once every server of its group has started: run as
`mcp_barrier.py <folder> <name> <group size>`, it marks `<folder>/<name>`, waits until the
folder holds `<group size>` marks, then runs tests/support/mcp_server.py.

Why: it shows, without timing anything, that Hearth starts the servers a request names
together. Started one after another, the first never sees the second's mark and fails its
connect timeout; started together, each sees the others' and answers.
"""

from __future__ import annotations

import runpy
import sys
import time
from pathlib import Path

if __name__ == "__main__":
    folder, name, size = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    (folder / name).touch()
    while len(list(folder.iterdir())) < size:
        time.sleep(0.02)
    server = Path(__file__).with_name("mcp_server.py")
    sys.argv = [str(server)]
    runpy.run_path(str(server), run_name="__main__")
