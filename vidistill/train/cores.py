"""How a training process shares the CPU's cores: torch's threads, the DataLoader's workers, and
what OpenMP threads do while they wait. Decided once per run, here, and logged at its start.

* Cores are the ones this process may run on (``os.sched_getaffinity``: a container's or
  ``taskset``'s limit), not the machine's count.
* DataLoader workers: as many as asked (``data.num_workers``), at most one per core.
* torch intra-op threads: one per core (``OMP_NUM_THREADS``, when set, wins). The workers do
  not get cores of their own: at cpu-tiny they are busy a small part of each step (the data
  wait is a few ms of a ~0.7 s step), and with passive waiting (below) a thread that loses its
  core to a worker sleeps instead of burning the other core.
* inter-op threads: 1. Eager training runs no inter-op parallel work; the pool only adds
  threads that compete for the same cores.
* OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE``): they sleep at a barrier instead
  of spinning. libgomp spins by default, and when a core is shared (a worker decoding, or any
  other process) the spinning thread holds the core the thread it waits for needs. Measured on
  a shared 2-core machine (``benchmarks/compare_train.py``, cpu-tiny, benchmarks/README.md):
  passive waiting 8.8x torch's defaults' clips/s at a load of ~7; this whole plan 3.4x at a
  load of ~4. libgomp reads the policy once,
  when torch is loaded, so :func:`prefer_passive_waiting` must run before ``import torch``
  (``vidistill train`` calls it first thing); a policy the user set is kept.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

from vidistill.data.workers import loader_workers, usable_cores

log = logging.getLogger(__name__)

WAIT_POLICY = "OMP_WAIT_POLICY"


def prefer_passive_waiting() -> None:
    """OpenMP threads sleep at a barrier instead of spinning, unless the user chose a policy.
    Only takes effect before torch is loaded (libgomp reads the variable once, at load)."""
    if "torch" not in sys.modules:
        os.environ.setdefault(WAIT_POLICY, "PASSIVE")


@dataclass(frozen=True)
class CorePlan:
    """How one training process uses its cores (see the module docstring for why)."""

    cores: int
    workers: int  # DataLoader worker processes
    torch_threads: int  # intra-op
    interop_threads: int
    wait_policy: str  # OMP_WAIT_POLICY ("" = libgomp's default: spin, then sleep)

    @classmethod
    def for_run(cls, num_workers: int) -> CorePlan:
        cores = usable_cores()
        env_threads = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(env_threads) if env_threads.isdigit() and int(env_threads) > 0 else cores
        return cls(cores=cores, workers=loader_workers(num_workers), torch_threads=threads,
                   interop_threads=1, wait_policy=os.environ.get(WAIT_POLICY, ""))

    def apply(self) -> None:
        """Set torch's thread pools (process-wide). The inter-op pool can be sized only before
        its first use; a process that already used it (a second run in one process) keeps it."""
        import torch

        torch.set_num_threads(self.torch_threads)
        if torch.get_num_interop_threads() != self.interop_threads:
            try:
                torch.set_num_interop_threads(self.interop_threads)
            except RuntimeError:
                log.debug("inter-op threads already in use; kept at %d", torch.get_num_interop_threads())

    def describe(self) -> str:
        return (f"{self.cores} cores: {self.torch_threads} torch threads, {self.interop_threads} inter-op, "
                f"{self.workers} DataLoader workers, OpenMP wait policy {self.wait_policy or 'default (spin)'}")
