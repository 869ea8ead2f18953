"""Short runs of the cpu-tiny preset under several settings, to see which ones collapse.

    python -m benchmarks.collapse_sweep STEPS NAME:"--flags ..." [NAME:"--flags ..."] ... [--video DIR]

Prints, per variant, the mean of each loss/entropy/KL term over the first 10 steps, around a
quarter of the run and over the last 10 steps (docs/METHOD.md "Small-scale pitfalls").
"""

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np


def synthetic_episodes(root: Path, episodes: int = 4, frames: int = 360) -> Path:
    """Panning/zooming camera over a textured scene with coloured discs (256x192 mp4)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for e in range(episodes):
        p = root / f"ep{e}.mp4"
        if p.exists():
            continue
        w = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"mp4v"), 30, (256, 192))
        tex = cv2.GaussianBlur(rng.integers(0, 255, (600, 900, 3), dtype=np.uint8), (0, 0), 3)
        for _ in range(12):
            colour = tuple(int(c) for c in rng.integers(0, 255, 3))
            cv2.circle(tex, (int(rng.integers(0, 900)), int(rng.integers(0, 600))), int(rng.integers(20, 80)), colour, -1)
        for i in range(frames):
            x, y = int(300 + 250 * np.sin(i / 60 + e)), int(200 + 150 * np.cos(i / 80 + e))
            z = 1.0 + 0.3 * np.sin(i / 50)
            w.write(cv2.resize(tex[y : y + int(192 * z), x : x + int(256 * z)], (256, 192)))
        w.release()
    return root


def summarise(records: list[dict]) -> dict:
    n = len(records)

    def mean(key, a, b):
        xs = [x[key] for x in records[max(a, 0) : b] if key in x]
        return round(sum(xs) / len(xs), 3) if xs else None

    keys = ("loss", "dense/loss", "global/loss", "global/teacher_entropy", "global/kl", "dense/teacher_entropy", "dense/kl")
    row = {k: (mean(k, 0, 10), mean(k, n // 4 - 5, n // 4 + 5), mean(k, n - 10, n)) for k in keys}
    row["collapsed_final"] = records[-1]["collapsed"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("steps", help="optimiser steps per variant")
    ap.add_argument("variants", nargs="+", metavar='NAME:"--flags ..."', help="train flags per variant")
    ap.add_argument("--video", type=Path, default=None, help="training video (default: synthetic episodes)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--output", type=Path, default=Path("/tmp/sweep"))
    args = ap.parse_args()
    videos = args.video or synthetic_episodes(Path("/tmp/sweepvids"))
    for name, extra in (v.split(":", 1) for v in args.variants):
        out = args.output / name
        t = time.time()
        r = subprocess.run([sys.executable, "-m", "vidistill", "train", "--video", str(videos), "--preset", "cpu-tiny",
                            "--output", str(out), "--max-steps", args.steps, "--device", args.device,
                            "--set", "train.progress=false", *shlex.split(extra)], capture_output=True, text=True)
        if r.returncode:
            print(name, "FAILED", r.stderr[-1500:])
            continue
        records = [json.loads(line) for line in open(out / "log.jsonl")]
        print(name, extra, json.dumps(summarise(records)), f"{time.time() - t:.0f}s", flush=True)


if __name__ == "__main__":
    main()
