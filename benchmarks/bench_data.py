"""Data pipeline cost per clip: from a video vs from the JPEG cache, against the JPEG-decode floor.

The floor is the bare cost of a clip's frames: reading its K cached JPEG files and
``cv2.imdecode``-ing them. Rows (one worker, ``num_workers=0`` loop, clips in shuffled order like
training, cpu-tiny sizes: K=3, Δ=30, 96/48 px views, a generated 256x192 video):

* ``floor``: read + imdecode of the K cached files;
* ``cache frames`` / ``video frames``: the dataset's frame loading (RGB, exact indices);
  goal for the cache: <= 1.5x the floor;
* ``cache clip`` / ``video clip``: a whole dataset item (frames + all views, normalised);
* ``loader, 2 workers``: batches/s of the real DataLoader from the cache (full mode only).

    python benchmarks/bench_data.py            # quick
    python benchmarks/bench_data.py --full
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from vidistill.config import build_config
from vidistill.data.cache import extract_cache
from vidistill.data.dataset import build_dataloader, build_dataset

SIZE = (256, 192)


def write_video(path: Path, num_frames: int, size: tuple[int, int] = SIZE) -> Path:
    """A textured scene panning across the frame (realistic JPEG/MPEG-4 cost, unlike flat colour)."""
    w, h = size
    rng = np.random.default_rng(0)
    world = cv2.GaussianBlur(rng.integers(0, 255, (h, w * 4, 3), dtype=np.uint8), (0, 0), 2.0)
    yy, xx = np.mgrid[0:h, 0 : w * 4]
    world[..., 0] = (world[..., 0] // 2 + (xx % 255) // 2).astype(np.uint8)
    world[..., 1] = (world[..., 1] // 2 + (yy * 255 // h) // 2).astype(np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, size)
    for i in range(num_frames):
        x = (i * 2) % (w * 3)
        writer.write(np.ascontiguousarray(world[:, x : x + w]))
    writer.release()
    return path


def _time_per_clip(fn, clips: list[int], repeats: int) -> float:
    """Median over repeats of the mean seconds per clip (after one warm-up pass)."""
    for c in clips[: max(3, len(clips) // 10)]:
        fn(c)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for c in clips:
            fn(c)
        times.append((time.perf_counter() - t0) / len(clips))
    return statistics.median(times)


def run(quick: bool = True) -> list[dict]:
    num_frames, num_clips, repeats = (300, 60, 3) if quick else (1800, 300, 5)
    torch.set_num_threads(1)  # one worker = one core (what a DataLoader worker gets)
    cv2.setNumThreads(1)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        video = write_video(Path(tmp) / "scene.mp4", num_frames)
        cache = Path(tmp) / "cache"
        t0 = time.perf_counter()
        extract_cache([video], cache, workers=1, progress=False)
        extract_s = time.perf_counter() - t0

        over = {"data.num_workers": 0}
        ds_video = build_dataset(build_config("cpu-tiny", overrides={**over, "data.videos": [str(video)]}))
        ds_cache = build_dataset(build_config("cpu-tiny", overrides={**over, "data.videos": [str(cache)]}))
        k = ds_cache.index.num_frames
        clips = np.random.default_rng(0).permutation(len(ds_cache))[:num_clips].tolist()
        src = ds_cache.sources[0]

        def floor(c: int) -> None:
            _, frames = ds_cache.index.frames(c)
            for i in frames:
                data = np.fromfile(src._frame_path(i), dtype=np.uint8)
                cv2.imdecode(data, cv2.IMREAD_COLOR)

        base = _time_per_clip(floor, clips, repeats)
        measured = {
            "floor (read+imdecode K jpegs)": base,
            "cache frames": _time_per_clip(ds_cache.frames, clips, repeats),
            "video frames": _time_per_clip(ds_video.frames, clips, repeats),
            "cache clip (frames+views)": _time_per_clip(lambda c: ds_cache[(c, 0)], clips, repeats),
            "video clip (frames+views)": _time_per_clip(lambda c: ds_video[(c, 0)], clips, repeats),
        }
        for name, sec in measured.items():
            rows.append({
                "bench": "data", "case": name, "ms_per_clip": round(sec * 1e3, 3),
                "clips_per_s": round(1.0 / sec, 1), "x_floor": round(sec / base, 2),
                "frames_per_clip": k, "video": f"{SIZE[0]}x{SIZE[1]} mp4v, {num_frames} frames",
            })
        rows.append({
            "bench": "data", "case": "extract (1 process)", "ms_per_clip": None,
            "clips_per_s": None, "x_floor": None, "frames_per_s": round(num_frames / extract_s, 1),
        })
        if not quick:
            cfg = build_config("cpu-tiny", overrides={"data.videos": [str(cache)], "data.num_workers": 2})
            loader, _ = build_dataloader(cfg)
            it = iter(loader)
            next(it)  # worker start-up excluded
            n, t0 = 0, time.perf_counter()
            for batch in it:
                n += len(batch)
                if n >= 400:
                    break
            sec = (time.perf_counter() - t0) / n
            del it, loader  # stop the workers before the temporary cache disappears
            gc.collect()
            rows.append({
                "bench": "data", "case": "cache loader, 2 workers", "ms_per_clip": round(sec * 1e3, 3),
                "clips_per_s": round(1.0 / sec, 1), "x_floor": round(sec / base, 2),
            })
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'case':34s} {'ms/clip':>9s} {'clips/s':>9s} {'x floor':>8s}")
    for r in rows:
        if r.get("ms_per_clip") is None:
            print(f"{r['case']:34s} {r.get('frames_per_s', '')!s:>9} frames/s")
            continue
        print(f"{r['case']:34s} {r['ms_per_clip']:9.3f} {r['clips_per_s']:9.1f} {r['x_floor']:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="longer video, more clips, DataLoader row")
    args = parser.parse_args()
    print_table(run(quick=not args.full))


if __name__ == "__main__":
    main()
