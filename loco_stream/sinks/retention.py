"""A bound on the evidence folder's size: the oldest files are deleted first."""

from __future__ import annotations

from collections import deque
from pathlib import Path

EVIDENCE_SUFFIXES = (".jpg", ".mp4")


class Retention:
    """Keeps the evidence files under ``folder`` (those already there and those added) within
    ``max_bytes``, deleting the oldest first; the newest file always stays."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.deleted = 0  # files deleted to stay within the bound
        found = [p for p in folder.rglob("*") if p.suffix in EVIDENCE_SUFFIXES and p.is_file()]
        found.sort(key=lambda p: p.stat().st_mtime)
        self._files: deque[tuple[Path, int]] = deque((p, p.stat().st_size) for p in found)
        self.total = sum(size for _, size in self._files)  # bytes held

    def add(self, path: Path) -> None:
        """Count a file just written, then delete the oldest while over the bound."""
        size = path.stat().st_size
        self._files.append((path, size))
        self.total += size
        while self.total > self.max_bytes and len(self._files) > 1:
            old, old_size = self._files.popleft()
            old.unlink(missing_ok=True)
            self.total -= old_size
            self.deleted += 1
