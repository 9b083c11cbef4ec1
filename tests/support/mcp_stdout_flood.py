"""Not an MCP server: floods stdout with junk lines forever (a broken or misconfigured program)."""

import sys

while True:
    sys.stdout.write("junk " * 20 + "\n")
