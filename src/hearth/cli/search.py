"""`hearth search TEXT`: GGUF models on Hugging Face, or names in Ollama's library.

Asks the Hub directly from this process (no server needed): HF_ENDPOINT picks another Hub
(a mirror), HF_TOKEN or `huggingface-cli login` gives the token, as for `hearth pull`. With
`--library` it searches the catalog of Ollama's library shipped with Hearth (no network).
Each row's first column is what to give `hearth pull`.
"""

from __future__ import annotations

import argparse

from hearth.cli.common import UsageError, command

DEFAULT_LIMIT = 20


def _count(n: object) -> str:
    if not isinstance(n, int):
        return "-"
    for unit, scale in (("M", 10**6), ("K", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def search(args: argparse.Namespace) -> None:
    """Find models to pull: GGUF repositories on Hugging Face (most downloaded first), or with
    --library the names of Ollama's library."""
    from hearth.cli.output import Table, echo

    if args.limit < 1:
        raise UsageError("--limit must be 1 or more")
    if args.library:
        from hearth.downloads.search import search_library

        rows = search_library(args.text, limit=args.limit)
        table = Table("NAME", "SIZES", "DESCRIPTION")
        for row in rows:
            table.add_row(row["source"], ", ".join(row["sizes"]) or "-", row["description"])
    else:
        from hearth.downloads.search import search_hub

        rows = search_hub(args.text, limit=args.limit)  # token: HF_TOKEN, else the saved login
        table = Table("NAME", "DOWNLOADS", "LIKES", "QUANTIZATIONS", right=["DOWNLOADS", "LIKES"])
        for row in rows:
            quants = ", ".join(row["quantizations"]) or "-"
            if row.get("vision"):
                quants += " (+vision)"
            table.add_row(row["source"], _count(row["downloads"]), _count(row["likes"]), quants)
    if not rows:
        where = "Ollama's library (Hearth's catalog)" if args.library else "Hugging Face"
        echo(f"Nothing found on {where} for '{args.text}'.")
        return
    table.print()
    echo("\nPull one with `hearth pull NAME` (add :QUANT or :SIZE to choose, e.g. NAME:Q4_K_M).")


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = command(sub, "search", search, parents=[common])
    parser.add_argument("text", metavar="TEXT", nargs="?", default="", help="what to look for")
    parser.add_argument(
        "--library", action="store_true", help="search Ollama's library instead of Hugging Face"
    )
    parser.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, help=f"at most N rows (default {DEFAULT_LIMIT})"
    )
