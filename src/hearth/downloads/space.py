"""Disk space promised to the downloads running in this process, per filesystem.

Why a ledger: `.part` files are preallocated sparsely, so free space only drops as bytes land.
Two downloads that each fit alone both passed a plain free-space check and the second died with
ENOSPC. Every download with a known size therefore claims its remaining bytes here first; a new
claim must fit next to what the others still have to write on the same filesystem (`st_dev`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from hearth.core.errors import InsufficientStorage
from hearth.downloads import common
from hearth.downloads.common import human


@dataclass(eq=False)
class Claim:
    """Bytes one download promised to write; `landed` counts those already written since."""

    device: int
    amount: int
    landed: int = 0

    @property
    def outstanding(self) -> int:
        return max(0, self.amount - self.landed)


class Ledger:
    """Claims per filesystem, checked and recorded under one lock (claims come from any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claims: dict[int, list[Claim]] = {}

    def promised(self, folder: Path) -> int:
        """Bytes the running downloads on `folder`'s filesystem still have to write."""
        device = folder.stat().st_dev
        with self._lock:
            return sum(c.outstanding for c in self._claims.get(device, ()))

    def claim(self, folder: Path, name: str, amount: int, margin: int) -> Claim:
        """Record `amount` bytes for `name`, or raise InsufficientStorage naming the disk."""
        device = folder.stat().st_dev
        with self._lock:
            claims = self._claims.setdefault(device, [])
            others = sum(c.outstanding for c in claims)
            free = common.disk_free(folder)
            if amount + others + margin > free:
                running = (
                    f", other downloads to the same disk still need {human(others)}"
                    if others
                    else ""
                )
                raise InsufficientStorage(
                    f"Not enough disk space on the disk holding {folder} for {name}: it needs "
                    f"{human(amount + margin)} (including a {human(margin)} margin){running} "
                    f"but only {human(free)} is free. Free some space, wait for the other "
                    "downloads, or move the models folder."
                )
            claim = Claim(device, amount)
            claims.append(claim)
            return claim

    def release(self, claim: Claim | None) -> None:
        if claim is None:
            return
        with self._lock:
            claims = self._claims.get(claim.device, [])
            if claim in claims:
                claims.remove(claim)


LEDGER = Ledger()
