"""Choosing the adaptation recipe (``presets/adapt.yaml``) by measurement, on the sim robot.

Uses the adaptation benchmark's world (``benchmarks/adapt/run.py``): the base is a ViT-Ti/16
trained supervised on scene A's labels, adapted on scene B's video, probed (Fast-LP mIoU and a
linear depth probe, held-out stills) on B (adaptation) and A (forgetting); the probed encoder is
the exported teacher. Each row changes ONE thing of the recipe (or uses no recipe at all), at the
benchmark's compute (steps x batch). Data and base are reused from a benchmark folder.

    python -m benchmarks.recipe_sweep --output /work/recipe_sweep --bench /work/bench_adapt --seeds 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.adapt import run as bench

# Measured in two rounds (README "Start from a pretrained encoder"). Round 1 (slugs v*) showed the
# batch-scaled lr (5e-4 x 16/256) with momentum 0.999 does not move the model in 40 steps, so
# round 2 (slugs w*) starts from an unscaled lr of 5e-4 and varies one thing at a time.
CANDIDATE = ["--set", "optim.scale_lr=false", "--set", "optim.momentum_teacher=0.996"]
VARIANTS: dict[str, list[str]] = {
    "v0 no recipe (cpu-tiny + --init)": ["--preset", "cpu-tiny"],
    "v1 adapt preset (first cut)": [],
    "w0 adapt, lr 5e-4, momentum 0.996": CANDIDATE,
    "w1 w0 without head warm-up": [*CANDIDATE, "--set", "adapt.head_warmup_fraction=0"],
    "w2 w0 without layer decay / backbone scale": [
        *CANDIDATE, "--set", "adapt.layer_decay=1", "--set", "adapt.backbone_lr_scale=1"],
    "w3 w0 + Gram 1": [*CANDIDATE, "--gram-weight", "1"],
    "w4 w0 with momentum 0.999": [*CANDIDATE, "--set", "optim.momentum_teacher=0.999"],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", type=Path, required=True)
    ap.add_argument("--bench", type=Path, required=True, help="a benchmarks/adapt/run.py folder with data/ and base/")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--only", nargs="+", default=None, help="variant slugs to run")
    known, rest = ap.parse_known_args()
    known.output.mkdir(parents=True, exist_ok=True)
    for name in ("data", "base"):
        link = known.output / name
        if not link.exists():
            link.symlink_to((known.bench / name).resolve())
    bench.ROWS.clear()
    bench.ROWS["base (as is)"] = {"kind": "base"}
    bench.SLUGS.clear()
    bench.SLUGS["base (as is)"] = "base"
    for name, args in VARIANTS.items():
        slug = name.split()[0]
        if known.only and slug not in known.only:
            continue
        bench.ROWS[name] = {"kind": "train", "init": True, "args": args}
        bench.SLUGS[name] = slug
    argv = ["--output", str(known.output), "--seeds", *map(str, known.seeds), "--no-probe-student", *rest]
    return bench.main(argv)


if __name__ == "__main__":
    sys.exit(main())
