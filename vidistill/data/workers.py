"""The helper processes of a run (DataLoader workers, ``extract``'s pool): one start method, and
each one dies with the process that started it.

The start method is ``spawn``:

* ``fork`` copies a process in which OpenCV may have run a parallel loop (any resize or decode
  in the main process), with its thread pool's locks but not its threads: the child deadlocks in
  its first OpenCV call (observed: ``cv2.setNumThreads`` in a worker, hung in
  ``pthread_cond_destroy``).
* ``forkserver`` starts clean processes, but they are the fork server's children and each holds
  the server's "alive" pipe open, so the server outlives the run; its workers watch it, not the
  run; the resource tracker stays while they hold its pipe. A SIGKILLed ``vidistill train`` (OOM
  killer, pre-emption, ``timeout``) left all of them behind (one such tree held ~1.5 GB 35 min
  after its run died).
* ``spawn``'s processes are the run's own children: :func:`exit_with_parent` ends each one within
  a second of its parent, and the resource tracker, whose pipe they held, exits after them. It
  costs one import of torch per worker, once per run (the DataLoader's workers are persistent).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

START_METHOD = "spawn"
_POLL_SECONDS = 0.5


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's or ``taskset``'s
    limit, not the machine's count), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def loader_workers(requested: int) -> int:
    """DataLoader worker processes for ``data.num_workers``: as many as asked, at most one per core."""
    return min(max(0, int(requested)), usable_cores())


def worker_context() -> multiprocessing.context.BaseContext:
    """The multiprocessing context of every helper process vidistill starts."""
    return multiprocessing.get_context(START_METHOD)


def exit_with_parent(parent_pid: int) -> None:
    """Call first thing in a helper process started by ``parent_pid``: the process exits at once
    when that parent is gone (a daemon thread compares ``os.getppid()``, which changes when the
    parent dies and the child is re-parented, with the parent's pid every half second)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(_POLL_SECONDS)
        os._exit(1)  # no cleanup: the run this process served is gone

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
