"""Export a run and compare the backends a robot can serve it with (same features, speed).

    python examples/export_and_compare.py runs/my_run
    python examples/export_and_compare.py          # a random-init cpu-tiny checkpoint made on the fly
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from vidistill.export.pipeline import ExportOptions, export_checkpoint
from vidistill.runtime import load_encoder


def time_encode(encoder, images: np.ndarray, repeats: int = 5) -> float:
    encoder.encode(images)  # warm-up (session / allocator set-up)
    t = time.perf_counter()
    for _ in range(repeats):
        encoder.encode(images)
    return (time.perf_counter() - t) / repeats * 1e3


def main(run: Path | None) -> None:
    if run is None:
        from vidistill.config import build_config
        from vidistill.train.checkpoint import write_random_init_checkpoint

        run = Path(tempfile.mkdtemp()) / "random_init"
        write_random_init_checkpoint(build_config("cpu-tiny"), run)
    result = export_checkpoint(ExportOptions(source=run, output=Path(run) / "export"))
    print(f"exported to {result.output}:", ", ".join(p.name for p in result.files))

    torch_enc = load_encoder(run, backend="torch")
    onnx_enc = load_encoder(result.output, backend="onnx")
    images = np.random.default_rng(0).integers(0, 256, (8, 240, 320, 3), dtype=np.uint8)  # camera frames
    a, b = torch_enc.encode(images), onnx_enc.encode(images)
    print(f"patch tokens {a.patch_tokens.shape}, grid {a.grid().shape}; "
          f"torch vs ONNX Runtime max |diff| = {np.abs(a.patch_tokens - b.patch_tokens).max():.2e}")
    for name, enc in (("torch", torch_enc), ("onnxruntime", onnx_enc)):
        print(f"{name:12s} {time_encode(enc, images):7.1f} ms per batch of {len(images)} (resize + normalise + forward)")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", nargs="?", type=Path, help="run folder or checkpoint (default: random init)")
    main(p.parse_args().run)
