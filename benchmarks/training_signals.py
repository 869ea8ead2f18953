"""What a training run's own signals say about whether it learns (issue 17): one table row per run
folder, from its ``log.jsonl`` and ``config.yaml``.

    python -m benchmarks.training_signals RUN [RUN ...] [--markdown] [--last 0.2]

Columns (each averaged over the last ``--last`` fraction of the logged steps, H as a fraction of
log(out_dim)): the loss against log(out_dim); the teacher's target entropy per branch, uniform at
1.0; how many prototypes a batch's targets spread over (``prototypes_used``); the KL from teacher
to student; the teacher's feature effective rank ([CLS] and patches) and the share of patch
variance that position alone explains, first measure -> last (``vidistill.train.representation``);
and the linear CKA of the teacher's patch features with the init's on fixed frames (adapted runs).
A run that learns has a loss clearly below log(out_dim), entropies well under 0.8 with many
prototypes used, and ranks that do not fall towards 1.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import yaml

from benchmarks.common import render_table

COLUMNS = ("run", "steps", "loss / lnK", "dense H", "dense used", "global H", "global used", "KL d/g",
           "patch rank", "cls rank", "pos. share", "CKA init")


def _mean(records: list[dict], key: str) -> float | None:
    vals = [r[key] for r in records if isinstance(r.get(key), (int, float))]
    return statistics.fmean(vals) if vals else None


def _first_last(records: list[dict], key: str, fmt: str) -> str:
    vals = [r[key] for r in records if isinstance(r.get(key), (int, float))]
    return f"{fmt.format(vals[0])} -> {fmt.format(vals[-1])}" if vals else "–"


def summarise(run: Path, last: float = 0.2) -> list[str]:
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if x.strip()]
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    log_k = math.log(cfg["model"]["out_dim"])
    tail = records[-max(1, round(last * len(records))):]

    def cell(key: str, fmt: str, scale: float = 1.0) -> str:
        v = _mean(tail, key)
        return "–" if v is None else fmt.format(v / scale)

    kl = "/".join(cell(f"{b}/kl", "{:.2f}") for b in ("dense", "global"))
    return [run.name, str(records[-1]["step"] if records else 0), cell("loss", "{:.2f}", log_k),
            cell("dense/teacher_entropy", "{:.2f}", log_k), cell("dense/prototypes_used", "{:.0f}"),
            cell("global/teacher_entropy", "{:.2f}", log_k), cell("global/prototypes_used", "{:.0f}"), kl,
            _first_last(records, "repr/patch_rank", "{:.0f}"), _first_last(records, "repr/cls_rank", "{:.1f}"),
            _first_last(records, "repr/position_share", "{:.2f}"), _first_last(records, "drift/patch_cka", "{:.3f}")]




def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="run folders (log.jsonl + config.yaml)")
    ap.add_argument("--last", type=float, default=0.2, help="fraction of the logged steps averaged")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    print(render_table(COLUMNS, [summarise(r, args.last) for r in args.runs], args.markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
