"""The core plan of a training process (vidistill.train.cores): threads and workers sized to the
cores the process may use; the OpenMP wait policy set before torch loads."""

from __future__ import annotations

import os
import subprocess
import sys

from vidistill.train.cores import CorePlan


def test_plan_sizes_threads_and_workers_to_the_cores_of_the_affinity(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    plan = CorePlan.for_run(num_workers=cores + 7)
    assert plan.cores == cores and plan.torch_threads == cores and plan.interop_threads == 1
    assert plan.workers == cores  # never more workers than cores
    assert CorePlan.for_run(num_workers=0).workers == 0
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert CorePlan.for_run(num_workers=2).torch_threads == 1  # the user's setting wins


def test_passive_waiting_is_set_before_torch_loads_and_keeps_the_users_policy():
    code = ("import os, sys; from vidistill.train.cores import prefer_passive_waiting; "
            "prefer_passive_waiting(); print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["PASSIVE", "False"]  # set, and torch not yet loaded by the module
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**env, "OMP_WAIT_POLICY": "ACTIVE"})
    assert out.stdout.split()[0] == "ACTIVE"
