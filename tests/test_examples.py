"""Every example runs (smoke tests with small sizes) and the README's commands parse."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def run_example(*args, cwd, timeout=300):
    r = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=ENV)
    assert r.returncode == 0, f"{args}: {r.stderr[-3000:]}"
    return r.stdout


def test_train_own_video_then_export_and_compare(tmp_path):
    out = run_example(ROOT / "examples/train_own_video.py", "--steps", "2", "--preset", "cpu-tiny",
                      "--batch-size", "2", "--output", tmp_path / "run", cwd=tmp_path)
    assert "checkpoint.pt" in out
    out = run_example(ROOT / "examples/export_and_compare.py", tmp_path / "run", cwd=tmp_path)
    diff = float(re.search(r"max \|diff\| = ([0-9.e+-]+)", out).group(1))
    assert diff < 1e-3
    assert "onnxruntime" in out


@pytest.mark.parametrize("script", ["wrap_gym_env.py", "vla_policy.py"])
def test_adapter_examples_run(script, tmp_path):
    assert run_example(ROOT / "examples" / script, cwd=tmp_path).strip()


def test_ppo_example_runs(tmp_path):
    pytest.importorskip("stable_baselines3")
    assert run_example(ROOT / "examples/ppo_sb3_features.py", "--steps", "256", cwd=tmp_path).strip()


def test_paper_script_uses_real_commands():
    from vidistill.cli import build_parser

    text = (ROOT / "examples/train_paper_4gpu.sh").read_text()
    lines = re.findall(r"^(?:vidistill|torchrun .* -m vidistill) (.+?)$", text.replace("\\\n", " "), re.M)
    assert [line.split()[0] for line in lines] == ["extract", "train", "export"], lines  # the script's 3 steps
    for line in lines:
        argv = [a.strip('"') for a in line.split()]
        build_parser(argv[0]).parse_args([a if not a.startswith("$") else "x" for a in argv])


def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    cmds = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#")[0].strip()
            m = re.match(r"^(?:torchrun .*?-m )?vidistill (.+)$", line)
            if m:
                cmds.append(m.group(1).split())
    return cmds


def test_every_readme_vidistill_command_parses():
    from vidistill.cli import build_parser

    cmds = readme_commands()
    assert len(cmds) >= 8
    for argv in cmds:
        try:
            build_parser(argv[0]).parse_args(argv)
        except SystemExit as e:
            raise AssertionError(f"README command does not parse: vidistill {' '.join(argv)}") from e


def test_readme_cli_reference_matches_the_real_help():
    from vidistill.cli import cli_reference

    assert cli_reference() in (ROOT / "README.md").read_text(), "regenerate: python -m vidistill.cli --reference"


def test_demo_has_openmp_threads_wait_passively_like_vidistill_train():
    """The demo trains in its own process: the wait policy must be set before torch loads there
    too (vidistill.train.cores: spinning threads cost up to 8x under contention)."""
    code = ("import importlib.util, os, sys; spec = importlib.util.spec_from_file_location('demo', 'examples/demo.py'); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); import torch; "
            "print(os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in ENV.items() if k != "OMP_WAIT_POLICY"}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-1] == "PASSIVE"
