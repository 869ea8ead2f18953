"""One training process per run folder: an advisory lock that dies with its process.

Two ``vidistill train`` on the same folder (the same command started twice: the default output
folder makes it easy) would race on ``checkpoint.pt`` and interleave ``log.jsonl``. ``flock`` on
``<run>/.lock`` is held by the open file, so the kernel drops it when the process exits in any
way, SIGKILL included: no stale lock to clean up by hand. The file keeps the holder's PID so the
second process can say who holds it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from vidistill.errors import VidistillError

LOCK_NAME = ".lock"


class RunFolderBusy(VidistillError):
    """Another process is training in this run folder."""


class RunLock:
    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None
        self._made_folder = False

    def acquire(self) -> RunLock:
        self._made_folder = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderBusy(
                f"{self.path.parent} is in use by another vidistill train (PID {holder}); wait for it "
                "to finish, stop it, or give another --output"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Unlock. The file stays (unlinking it could let two later processes lock two different
        inodes), except in a folder this lock created that nothing else was written to: a run
        that failed before its first file leaves no empty folder behind."""
        if self._fd is None:
            return
        if self._made_folder and [p.name for p in self.path.parent.iterdir()] == [LOCK_NAME]:
            self.path.unlink()
            self.path.parent.rmdir()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
