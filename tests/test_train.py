"""The trainer end to end on real videos: CLI, resume after SIGKILL, DDP on gloo, NaN stop."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vidistill.config import build_config
from vidistill.data.views import Normalise
from vidistill.runtime.checkpoints import load_checkpoint
from vidistill.train import train

# Small enough for seconds per run on 2 cores; the structure of the real presets.
TINY = [
    "--preset", "cpu-tiny", "--frame-stride", "8", "--batch-size", "4", "--global-size", "64",
    "--out-dim", "512", "--num-workers", "0",
    "--set", "data.local_size=32", "--set", "data.max_side=0", "--set", "model.head_hidden_dim=128",
]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def tiny_config(videos, output, **overrides):
    base = {
        "data.videos": [str(v) for v in videos], "train.output": str(output), "data.frame_stride": 8,
        "optim.batch_size": 4, "data.global_size": 64, "data.local_size": 32, "model.out_dim": 512,
        "data.num_workers": 0, "data.max_side": 0, "model.head_hidden_dim": 128, "train.progress": False,
    }
    return build_config("cpu-tiny", overrides={**base, **overrides})


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "vidistill", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def videos(tmp_path_factory, make_video):
    root = tmp_path_factory.mktemp("episodes")
    return [make_video(root / f"ep{i}.mp4", 48) for i in range(2)]


def test_cli_trains_logs_checkpoints_and_a_rerun_resumes(videos, tmp_path):
    out = tmp_path / "my run"  # a space: the printed hint must still paste as one argument
    r = run_cli("train", "--video", str(videos[0].parent), "--output", str(out), "--max-steps", "4", *TINY)
    assert r.returncode == 0, r.stderr
    assert f"next: vidistill export {shlex.quote(str(out))} --onnx" in r.stdout
    # The core plan, logged at start: OMP_NUM_THREADS (ENV: 1) wins; OpenMP threads wait passively.
    policy = os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
    assert f": 1 torch threads, 1 inter-op, 0 DataLoader workers, OpenMP wait policy {policy}" in r.stderr
    records = read_log(out)
    assert [x["step"] for x in records] == [1, 2, 3, 4]
    for key in ("loss", "dense/loss", "global/loss", "lr", "teacher_entropy", "kl", "clips_per_s", "collapsed"):
        assert key in records[0]
    state = load_checkpoint(out / "checkpoint.pt")  # weights_only load
    assert state["progress"]["step"] == 4 and state["contract"]["image_size"] == [64, 64]
    assert (out / "config.yaml").is_file()
    # The same command again: the run is found and not restarted.
    r2 = run_cli("train", "--video", str(videos[0].parent), "--output", str(out), "--max-steps", "4", *TINY)
    assert r2.returncode == 0, r2.stderr
    assert "already finished" in r2.stderr
    assert len(read_log(out)) == 4
    # Another budget would rebuild the cosine schedules under the run (lr and momentum jump).
    r3 = run_cli("train", "--video", str(videos[0].parent), "--output", str(out), "--max-steps", "6", *TINY)
    assert r3.returncode == 2 and "Traceback" not in r3.stderr
    assert "total steps (--max-steps / --epochs) 4 -> 6" in r3.stderr
    assert len(read_log(out)) == 4


def test_sigkilled_run_resumes_from_its_last_checkpoint_to_the_same_weights(videos, tmp_path):
    steps = 12
    common = ["--max-steps", str(steps), "--checkpoint-every", "3", *TINY]
    for v in videos:
        common += ["--video", str(v)]
    reference = tmp_path / "straight"
    assert run_cli("train", "--output", str(reference), *common).returncode == 0

    killed = tmp_path / "killed"
    args = ["train", "--output", str(killed), *common]
    proc = subprocess.Popen([sys.executable, "-m", "vidistill", *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        log = killed / "log.jsonl"
        if (killed / "checkpoint.pt").exists() and log.exists() and len(log.read_text().splitlines()) >= 4:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved_step = load_checkpoint(killed / "checkpoint.pt")["progress"]["step"]
    assert 3 <= saved_step < steps and saved_step % 3 == 0

    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert f"resuming {killed / 'checkpoint.pt'} from step {saved_step}" in r.stderr
    logged = [x["step"] for x in read_log(killed)]
    assert logged[-(steps - saved_step):] == list(range(saved_step + 1, steps + 1))

    a = load_checkpoint(reference / "checkpoint.pt")["teacher"]
    b = load_checkpoint(killed / "checkpoint.pt")["teacher"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=f"teacher {k} differs after resume")


@pytest.mark.slow
@pytest.mark.timeout(1500)  # ~1 min on an idle machine; spawned workers each import torch
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
def test_sigkilled_run_takes_its_data_workers_and_resource_tracker_with_it(videos, tmp_path):
    """An OOM killer, a pre-emption or `timeout` SIGKILLs the trainer: every process it started
    (DataLoader workers, the resource tracker) must go with it, not hold memory for hours."""
    from process_tree import command_line, descendants, kill_all, survivors_of_sigkill

    out = tmp_path / "run"
    args = ["train", "--output", str(out), "--max-steps", "1000", *TINY, "--num-workers", "2"]
    for v in videos:
        args += ["--video", str(v)]
    proc = subprocess.Popen([sys.executable, "-m", "vidistill", *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    helpers: list[int] = []
    try:
        deadline = time.time() + 1400  # a first step on a busy 2-core machine
        log = out / "log.jsonl"
        while time.time() < deadline and proc.poll() is None and not (log.exists() and log.read_text().strip()):
            time.sleep(0.1)
        assert proc.poll() is None, "training ended before it could be killed"
        helpers = descendants(proc.pid)
        workers = [p for p in helpers if "spawn_main" in command_line(p)]
        assert len(workers) == 2 and any("resource_tracker" in command_line(p) for p in helpers), (
            [command_line(p) for p in helpers])
        left, waited = survivors_of_sigkill(proc, helpers)
        assert not left, f"alive {waited:.0f} s after the trainer: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_all(helpers)


def test_torchrun_two_gloo_processes_keep_identical_weights(videos, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "vidistill", "train", "--video", str(videos[0].parent), "--output", str(out),
           "--max-steps", "3", *TINY]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    state = load_checkpoint(out / "checkpoint.pt")
    fingerprints = state["replica_fingerprints"]
    assert len(fingerprints) == 2
    assert fingerprints[0] == pytest.approx(fingerprints[1], rel=1e-9, abs=1e-9)
    assert len(state["rng"]["torch"]) == 2
    assert [x["step"] for x in read_log(out)] == [1, 2, 3]
    assert state["progress"]["position"]["world_size"] == 2
    # One process on the same run: each rank's shard (and so the epoch position) would change.
    r = run_cli("train", "--video", str(videos[0].parent), "--output", str(out), "--max-steps", "3", *TINY)
    assert r.returncode == 2 and "processes (torchrun --nproc_per_node) 2 -> 1" in r.stderr


def test_non_finite_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(videos, tmp_path):
    out = tmp_path / "nan"
    r = run_cli("train", "--video", str(videos[0].parent), "--output", str(out), "--max-steps", "30",
                "--checkpoint-every", "1", *TINY, "--set", "optim.base_lr=1e9", "--set", "optim.clip_grad=0")
    assert r.returncode == 3, r.stderr
    assert "non-finite loss at step" in r.stderr and "Traceback" not in r.stderr
    state = load_checkpoint(out / "checkpoint.pt")
    for t in state["teacher"].values():
        assert torch.isfinite(t).all()


def test_objectives_compute_their_own_losses_on_the_same_batch(videos, tmp_path):
    """One batch of real clips, one student and teacher: the method is 0.5 dense + 0.5 global, each
    ablation computes exactly its own term, and plain DINO (two global views of the same frames,
    their local crops) another loss again."""
    from vidistill.config import Objective
    from vidistill.data import build_dataloader
    from vidistill.model import Student, Teacher
    from vidistill.objective import build_objective

    cfg = tiny_config(videos, tmp_path / "x", **{"optim.batch_size": 2})
    batch = next(iter(build_dataloader(cfg)[0]))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors; spinning OpenMP threads only slow a shared machine
    torch.manual_seed(0)
    student = Student(cfg).eval()  # no drop-path: every objective sees the same features
    teacher = Teacher(student)
    losses = {}
    for objective in Objective:
        norm = Normalise(cfg.data.mean, cfg.data.std)
        globals_, locals_ = norm(batch.globals), norm(batch.locals)
        if objective is Objective.DINO:  # two global views (frames t, t+Δ) and the locals of one
            globals_, locals_ = globals_[:, :2], locals_[:, :1]
        with torch.no_grad():
            loss, stats = build_objective(tiny_config(videos, tmp_path / "x", objective=objective.value))(
                student, teacher, globals_, locals_, 0.04)
        losses[objective] = (loss.item(), {k: v.item() for k, v in stats.items() if k.endswith("/loss")})
    torch.set_num_threads(threads)
    method, parts = losses[Objective.METHOD]
    assert method == pytest.approx(0.5 * parts["dense/loss"] + 0.5 * parts["global/loss"], rel=1e-5)
    assert losses[Objective.DENSE] == (pytest.approx(parts["dense/loss"], rel=1e-5), {"dense/loss": pytest.approx(parts["dense/loss"], rel=1e-5)})
    assert losses[Objective.GLOBAL] == (pytest.approx(parts["global/loss"], rel=1e-5), {"global/loss": pytest.approx(parts["global/loss"], rel=1e-5)})
    values = [losses[o][0] for o in Objective]
    assert min(abs(a - b) for i, a in enumerate(values) for b in values[i + 1:]) > 1e-3, losses


@pytest.mark.parametrize("objective", ["dino", "global", "dense"])
def test_baseline_objectives_train(videos, tmp_path, objective):
    overrides = {"train.max_steps": 2, "objective": objective}
    if objective == "dino":
        overrides["data.time_aug_delta"] = 5
    run = train(tiny_config(videos, tmp_path / objective, **overrides))
    assert load_checkpoint(run / "checkpoint.pt")["config"]["objective"] == objective


def test_bad_inputs_give_clear_errors(videos, tmp_path):
    r = run_cli("train", "--video", str(tmp_path / "missing"), *TINY)
    assert r.returncode != 0 and "missing" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("train", *TINY)
    assert r.returncode != 0 and "no video given" in r.stderr
    r = run_cli("train", "--video", str(videos[0]), "--set", "optim.nonsense=1", *TINY)
    assert r.returncode != 0 and "unknown key" in r.stderr and "Traceback" not in r.stderr
    # An existing run with another architecture is not silently overwritten.
    out = tmp_path / "run"
    assert run_cli("train", "--video", str(videos[0]), "--output", str(out), "--max-steps", "1", *TINY).returncode == 0
    r = run_cli("train", "--video", str(videos[0]), "--output", str(out), "--max-steps", "2", *TINY,
                "--arch", "vit_small_patch16_224")
    assert r.returncode != 0 and "different 'model'" in r.stderr


def test_schedules_follow_dino_and_take_fractional_epochs_for_short_runs():
    from vidistill.train.schedules import Schedules

    cfg = build_config("cpu-tiny", overrides={
        "optim.base_lr": 1e-3, "optim.warmup_epochs": 0.5, "optim.freeze_last_layer_epochs": 0.25,
        "optim.momentum_teacher": 0.99, "train.max_steps": 40,
    })
    sch = Schedules.build(cfg, steps_per_epoch=20, world_size=1)
    assert sch.total_steps == 40 and len(sch.lr) == 40
    assert sch.freeze_last_layer_steps == 5  # 0.25 epoch of 20 steps
    assert sch.lr[0] == 0.0 and max(sch.lr) == pytest.approx(1e-3) and sch.lr.index(max(sch.lr)) == 10
    assert sch.lr[-1] < 1e-4  # cosine decay over the steps the run will actually take
    assert sch.momentum[0] == pytest.approx(0.99) and sch.momentum[-1] > 0.999
    assert sch.last_layer_frozen(4) and not sch.last_layer_frozen(5)
    cfg.optim.warmup_teacher_temp, cfg.optim.teacher_temp, cfg.optim.warmup_teacher_temp_epochs = 0.04, 0.07, 1
    temps = Schedules.build(cfg, steps_per_epoch=20, world_size=1).teacher_temp
    assert len(temps) == 40 and temps[0] == pytest.approx(0.04) and temps[10] == pytest.approx(0.055)
    assert temps[20:] == [pytest.approx(0.07)] * 20  # DINO: warm-up, then constant


def test_a_second_train_on_the_same_run_folder_is_refused_naming_the_holder(videos, tmp_path):
    from vidistill.train.run_lock import RunLock

    out = tmp_path / "run"
    args = ["train", "--video", str(videos[0]), "--output", str(out), "--max-steps", "500", *TINY]
    first = subprocess.Popen([sys.executable, "-m", "vidistill", *args], env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "log.jsonl").exists():
            assert first.poll() is None, "the first run ended early"
            time.sleep(0.05)
        second = run_cli(*args)
        assert second.returncode != 0
        assert f"in use by another vidistill train (PID {first.pid})" in second.stderr
        assert "Traceback" not in second.stderr
        assert first.poll() is None  # the first run was not disturbed
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    steps = [x["step"] for x in read_log(out)]
    assert steps == list(range(1, len(steps) + 1))  # one writer: each step logged once
    RunLock(out).acquire().release()  # a SIGKILLed holder leaves no stale lock


def test_unavailable_device_and_missing_tensorboard_are_clear_cli_errors(videos, tmp_path):
    if not torch.cuda.is_available():
        r = run_cli("train", "--video", str(videos[0]), "--output", str(tmp_path / "a"), *TINY, "--device", "cuda")
        assert r.returncode == 2 and "CUDA is not available" in r.stderr and "Traceback" not in r.stderr
        assert not (tmp_path / "a").exists()  # nothing half-written
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        r = run_cli("train", "--video", str(videos[0]), "--output", str(tmp_path / "b"), *TINY, "--tensorboard")
        assert r.returncode == 2 and "pip install 'vidistill[tb]'" in r.stderr and "Traceback" not in r.stderr
        assert not (tmp_path / "b").exists()


def test_resume_refuses_a_changed_batch_or_video_set_naming_what_changed(videos, tmp_path):
    from vidistill.errors import CheckpointError

    out = tmp_path / "run"
    train(tiny_config(videos[:1], out, **{"train.max_steps": 2}))
    position = load_checkpoint(out / "checkpoint.pt")["progress"]["position"]
    assert position["batch_size"] == 4 and position["total_steps"] == 2 and position["world_size"] == 1
    with pytest.raises(CheckpointError, match=r"batch per process \(--batch-size\) 4 -> 2"):
        train(tiny_config(videos[:1], out, **{"train.max_steps": 2, "optim.batch_size": 2}))
    with pytest.raises(CheckpointError, match=r"clips per epoch \(data.videos, data.clip_stride\) \d+ -> \d+"):
        train(tiny_config(videos, out, **{"train.max_steps": 2}))
    # Unchanged settings: the finished run is found and left alone.
    assert train(tiny_config(videos[:1], out, **{"train.max_steps": 2})) == out
    assert len(read_log(out)) == 2


def test_collapse_watch_warns_when_targets_stay_near_uniform_for_long(caplog):
    """The stream the sample robot log gives cpu-tiny: [CLS] entropy 0.84-0.87*log K, KL 0.4."""
    import logging
    import math

    from vidistill.train.monitor import CollapseDetector

    log_k = math.log(4096)
    watch = CollapseDetector(4096)
    with caplog.at_level(logging.WARNING, logger="vidistill.train.monitor"):
        for step in range(1, 601):
            near_uniform = step > 150
            record = {
                "dense/teacher_entropy": 0.45 * log_k, "dense/kl": 1.2,  # healthy all along
                "global/teacher_entropy": (0.86 if near_uniform else 0.5 + 0.002 * (step % 7)) * log_k,
                "global/kl": 0.4,
            }
            assert watch.update(record, step) is False  # never "collapsed" by the strict rule
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings and all("the global branch" in w for w in warnings)  # the dense branch is quiet
    assert "near-uniform for 100 steps (since step 151)" in warnings[0]
    assert "0.86*log(out_dim)" in warnings[0] and "KL to the student 0.4" in warnings[0]
    assert "teacher temperature" in warnings[0] and "optim.momentum_teacher" in warnings[0]
    # Repeated as the streak doubles (100, 200, 400 steps), not every step.
    assert [w.split("near-uniform for ")[1].split(" ")[0] for w in warnings] == ["100", "200", "400"]


def test_teacher_stays_plain_and_in_eval_mode_through_training(videos, tmp_path):
    from timm.layers import DropPath

    from vidistill.train.distributed import DistributedContext
    from vidistill.train.trainer import Trainer

    trainer = Trainer(tiny_config(videos[:1], tmp_path / "run", **{"train.max_steps": 2}), DistributedContext())
    before = {k: v.clone() for k, v in trainer.teacher.state_dict().items()}
    trainer.fit()
    assert trainer.student.training and not trainer.teacher.training
    assert not any(m.training for m in trainer.teacher.modules())
    assert not any(isinstance(m, DropPath) for m in trainer.teacher.modules())
    assert any(isinstance(m, DropPath) for m in trainer.student.modules())
    moved = [k for k, v in trainer.teacher.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("backbone.") for k in moved) and any(k.startswith("head.") for k in moved)
