"""A process and its descendants, read from /proc (Linux): for tests that SIGKILL a real run and
check that nothing it started outlives it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def _parents() -> dict[int, int]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:  # gone meanwhile
                continue
            out[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def descendants(pid: int) -> list[int]:
    parents = _parents()
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        found += kids
        todo += kids
    return found


def alive(pid: int) -> bool:
    """Running or sleeping (a zombie has exited: only its exit status waits to be collected)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def survivors_after(pids: list[int], seconds: float) -> tuple[list[int], float]:
    """Wait up to ``seconds`` for ``pids`` to exit: (those still alive, seconds waited)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        left = [p for p in pids if alive(p)]
        if not left:
            return [], time.monotonic() - t0
        time.sleep(0.1)
    return [p for p in pids if alive(p)], time.monotonic() - t0


def survivors_of_sigkill(proc, helpers: list[int], seconds: float = 30.0) -> tuple[list[str], float]:
    """SIGKILL ``proc`` (as an OOM killer or a pre-emption would) and wait up to ``seconds`` for
    ``helpers``: the command lines of those still alive (killed then, so a failing test leaves
    nothing behind) and the seconds waited."""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left, waited = survivors_after(helpers, seconds)
    lines = [command_line(p) for p in left]
    kill_all(left)
    return lines, waited


def kill_all(pids: list[int]) -> None:
    """Clean up after a failed test (only the processes it started)."""
    for p in pids:
        if alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
