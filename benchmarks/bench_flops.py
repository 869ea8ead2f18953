"""Encoder forward FLOP rate as a fraction of the machine's measured matrix-multiply peak.

The physical limit is measured, not looked up: the best FLOP rate of a large square
``torch.matmul`` (2·n³ FLOPs) in each dtype on this device. The encoder's forward
(``forward_features``, random init, ``torch.inference_mode``) is counted with
``torch.utils.flop_counter.FlopCounterMode`` (the library's count: matmuls, the patch-embedding
convolution and SDPA attention), cross-checked against the analytic count
(2·in·out per token for every Linear in the blocks, the patch-embedding convolution, and
2·2·N²·D per layer for attention), then timed. bf16 runs under ``torch.autocast`` (CPU or CUDA)
and is compared with the bf16 matmul peak, fp32 with the fp32 peak.

Everything is timed side by side: each round runs every matmul and every forward once, in turn,
so background load hits them alike; each figure is the best round (the least-disturbed sample,
which is also what "peak" means for the matmul).

Models: ViT-S/16 at 224 px (the paper's encoder) and ViT-Ti/16 at 96 px (the cpu-tiny preset).

    python -m benchmarks.bench_flops            # quick (CPU sizes)
    python -m benchmarks.bench_flops --full     # GPU sizes: bigger matmuls and batches
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class ModelSpec:
    """A timm ViT at one input size, timed at one batch size."""

    arch: str
    image_size: int
    batch: int
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or f"{self.arch}@{self.image_size}"


def default_models(quick: bool, device: torch.device) -> list[ModelSpec]:
    if device.type == "cuda":
        return [ModelSpec("vit_small_patch16_224", 224, 128 if quick else 256, "ViT-S/16 224"),
                ModelSpec("vit_tiny_patch16_224", 96, 512 if quick else 1024, "ViT-Ti/16 96 (cpu-tiny)")]
    return [ModelSpec("vit_small_patch16_224", 224, 4 if quick else 16, "ViT-S/16 224"),
            ModelSpec("vit_tiny_patch16_224", 96, 32 if quick else 128, "ViT-Ti/16 96 (cpu-tiny)")]


def default_matmul_sizes(quick: bool, device: torch.device) -> tuple[int, ...]:
    if device.type == "cuda":
        return (4096, 8192) if quick else (4096, 8192, 16384)
    return (1024, 2048) if quick else (1024, 2048, 4096)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def build_model(spec: ModelSpec, device: torch.device) -> nn.Module:
    import timm

    torch.manual_seed(0)
    model = timm.create_model(spec.arch, pretrained=False, num_classes=0, img_size=spec.image_size)
    return model.eval().to(device)


def counted_flops(model: nn.Module, image_size: int, device: torch.device) -> int:
    """FLOPs of one image's ``forward_features``, as torch's FlopCounterMode counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, image_size, image_size, device=device)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.forward_features(x)
    return int(counter.get_total_flops())


def analytic_flops(model: nn.Module, image_size: int) -> int:
    """2·in·out per token for each Linear in the blocks, the patch-embedding convolution, and
    2·2·N²·D per layer for attention (QKᵀ and AV), for one image."""
    pe = model.patch_embed
    ps = pe.patch_size if isinstance(pe.patch_size, int) else pe.patch_size[0]
    patches = (image_size // ps) ** 2
    tokens = patches + int(getattr(model, "num_prefix_tokens", 1))
    conv = pe.proj
    flops = 2 * conv.in_channels * ps * ps * conv.out_channels * patches
    for m in model.blocks.modules():
        if isinstance(m, nn.Linear):
            flops += 2 * m.in_features * m.out_features * tokens
    flops += len(model.blocks) * 2 * 2 * tokens * tokens * int(model.embed_dim)
    return int(flops)


def _matmul_fn(n: int, dtype: torch.dtype, device: torch.device) -> Callable[[], object]:
    g = torch.Generator(device="cpu").manual_seed(n)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    return lambda: torch.matmul(a, b)


def _forward_fn(model: nn.Module, spec: ModelSpec, dtype: torch.dtype, device: torch.device):
    x = torch.randn(spec.batch, 3, spec.image_size, spec.image_size, device=device)

    def fn():
        with torch.inference_mode(), _autocast(device, dtype):
            return model.forward_features(x)

    return fn


def _best_side_by_side(fns: dict[str, Callable[[], object]], device: torch.device, rounds: int,
                       warmup: int = 1) -> dict[str, float]:
    """Best seconds per call of each fn over ``rounds``; each round calls every fn once, in turn."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            _sync(device)
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def _dtype_supported(dtype: torch.dtype, device: torch.device) -> bool:
    try:
        a = torch.ones(8, 8, device=device, dtype=dtype)
        torch.matmul(a, a)
        return True
    except (RuntimeError, TypeError):
        return False


def run(quick: bool = True, models: Sequence[ModelSpec] | None = None,
        matmul_sizes: Sequence[int] | None = None, dtypes: Sequence[str] = ("fp32", "bf16"),
        device: str = "auto", rounds: int | None = None, threads: int | None = None) -> list[dict]:
    """Rows: one ``matmul peak`` row per dtype (best over ``matmul_sizes``) and one ``forward``
    row per model and dtype with ``fraction_of_peak`` = achieved FLOP/s / that dtype's peak.
    ``threads`` pins torch's intra-op threads for the run (restored after)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run(quick, models, matmul_sizes, dtypes, device, rounds)
    finally:
        torch.set_num_threads(before)


def _run(quick, models, matmul_sizes, dtypes, device, rounds) -> list[dict]:
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    models = list(models) if models is not None else default_models(quick, dev)
    sizes = tuple(matmul_sizes) if matmul_sizes is not None else default_matmul_sizes(quick, dev)
    rounds = rounds or ((5 if dev.type == "cpu" else 20) if quick else (10 if dev.type == "cpu" else 50))
    dtypes = [d for d in dtypes if _dtype_supported(DTYPES[d], dev)]

    built = {spec: build_model(spec, dev) for spec in models}
    counts = {spec: (counted_flops(m, spec.image_size, dev), analytic_flops(m, spec.image_size))
              for spec, m in built.items()}
    fns: dict[tuple, Callable[[], object]] = {}
    for d in dtypes:
        for n in sizes:
            fns[("matmul", d, n)] = _matmul_fn(n, DTYPES[d], dev)
        for spec, m in built.items():
            fns[("forward", d, spec)] = _forward_fn(m, spec, DTYPES[d], dev)
    best = _best_side_by_side(fns, dev, rounds)

    common = {"bench": "flops", "device": dev.type, "threads": torch.get_num_threads(),
              "fp32_matmul_precision": torch.get_float32_matmul_precision()}  # "high" = TF32 on CUDA
    rows: list[dict] = []
    peak: dict[str, float] = {}
    for d in dtypes:
        rates = {n: 2 * n**3 / best[("matmul", d, n)] for n in sizes}
        n_best = max(rates, key=rates.get)
        peak[d] = rates[n_best]
        rows.append({**common, "case": f"matmul peak {d}", "dtype": d, "matmul_n": n_best,
                     "matmul_gflops_by_n": {str(n): round(r / 1e9, 1) for n, r in rates.items()},
                     "gflops_per_s": peak[d] / 1e9})
    for d in dtypes:
        for spec in models:
            counted, analytic = counts[spec]
            sec = best[("forward", d, spec)]
            rate = counted * spec.batch / sec
            rows.append({**common, "case": f"forward {spec.name} {d}", "model": spec.name, "arch": spec.arch,
                         "image_size": spec.image_size, "dtype": d, "batch": spec.batch,
                         "gflop_per_image": counted / 1e9, "gflop_per_image_analytic": analytic / 1e9,
                         "ms_per_batch": sec * 1e3, "images_per_s": spec.batch / sec,
                         "gflops_per_s": rate / 1e9, "peak_gflops_per_s": peak[d] / 1e9,
                         "fraction_of_peak": rate / peak[d]})
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'case':44s} {'GFLOP/img':>9s} {'batch':>5s} {'ms':>9s} {'GFLOP/s':>9s} {'of peak':>8s}"]
    for r in rows:
        if "fraction_of_peak" in r:
            lines.append(f"{r['case']:44s} {r['gflop_per_image']:9.3f} {r['batch']:5d} {r['ms_per_batch']:9.1f} "
                         f"{r['gflops_per_s']:9.1f} {r['fraction_of_peak']:8.2f}")
        else:
            lines.append(f"{r['case'] + ' (n=' + str(r['matmul_n']) + ')':44s} {'':9s} {'':5s} {'':9s} "
                         f"{r['gflops_per_s']:9.1f} {'1.00':>8s}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="bigger matmuls and batches, more rounds")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own)")
    a = p.parse_args()
    print(format_table(run(quick=not a.full, device=a.device, threads=a.threads)))


if __name__ == "__main__":
    main()
