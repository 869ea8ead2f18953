"""Encoder inference: torch eager vs ONNX Runtime (CPU; CUDA / TensorRT EP when present) vs a
TensorRT engine (when tensorrt + CUDA are present), ViT-S/16 at 224 px, random init.

The artefacts are the ones ``vidistill export`` writes (same rebuild, same ONNX simplification,
same session helper). Backends on one device are timed side by side: each round runs every
backend once, in turn, so background load hits them alike; the table gives the median per
backend and its ratio to torch eager on the same device and batch.

    python -m benchmarks.bench_inference              # quick: a few rounds
    python -m benchmarks.bench_inference --full       # more rounds
    python -m benchmarks.bench_inference --threads 2  # pin torch and ORT to 2 threads
    python -m benchmarks.bench_inference --explore    # + ONNX Runtime session/export variants

CPU goals (2 cores): ONNX Runtime >= 2x torch eager at batch 1, >= 1.5x at batch 32.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import timm
import torch

from benchmarks.common import interleaved
from vidistill.contract import EncoderContract
from vidistill.export.onnx_export import export_onnx, quiet_loggers
from vidistill.model.backbone import contract_of
from vidistill.runtime.ort import CUDA_EP, TRT_EP, import_ort, make_ort_session
from vidistill.runtime.torch_model import TokenEncoder, rebuild_at_size

ARCH, SIZE = "vit_small_patch16_224", 224
GOALS = {1: 2.0, 32: 1.5}  # ORT CPU vs torch eager CPU


def _teacher() -> tuple[torch.nn.Module, EncoderContract]:
    torch.manual_seed(0)
    model = timm.create_model(ARCH, pretrained=False, num_classes=0, img_size=SIZE, dynamic_img_size=True).eval()
    return model, contract_of(model, ARCH, SIZE, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _torch_runner(model: torch.nn.Module, device: str) -> Callable[[np.ndarray], object]:
    model = model.to(device)

    @torch.inference_mode()
    def run(x: np.ndarray):
        out = model(torch.from_numpy(x).to(device))
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    return run


def _ort_runner(session, contract: EncoderContract) -> Callable[[np.ndarray], object]:
    return lambda x: session.run(None, {contract.input_name: x})


def _trt_runner(engine: Path, contract: EncoderContract) -> Callable[[np.ndarray], object]:
    from vidistill.runtime.backends.tensorrt import TensorRTEncoder

    return TensorRTEncoder(engine, "cuda", contract=contract).run  # the runner a robot uses


def _ort_variants(encoder: torch.nn.Module, contract: EncoderContract, onnx_path: Path, workdir: Path,
                  threads: int | None) -> dict[str, Callable]:
    """ONNX Runtime CPU variants, to see what moves the needle (each is timed beside torch alone,
    so one variant's spinning threads cannot slow another down)."""
    ort = import_ort()

    def session(path: Path, level: str = "ORT_ENABLE_ALL", spin: bool = True):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        if threads:
            opts.intra_op_num_threads = threads
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        return _ort_runner(ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]), contract)

    for m in encoder.modules():  # the same weights exported through torch's fused SDPA instead
        if hasattr(m, "fused_attn"):
            m.fused_attn = True
    fused = workdir / "encoder-fused-attn.onnx"
    export_onnx(encoder, contract, fused)
    variants = {
        "ort: opt level BASIC": session(onnx_path, "ORT_ENABLE_BASIC"),
        "ort: opt level EXTENDED": session(onnx_path, "ORT_ENABLE_EXTENDED"),
        "ort: no thread spinning": session(onnx_path, spin=False),
        "ort: fused-attn export": session(fused),
    }
    try:  # not an artefact we ship (TensorRT cannot parse it): shows the int8 headroom on CPU
        from onnxruntime.quantization import QuantType, quantize_dynamic

        int8 = workdir / "encoder-int8.onnx"
        with quiet_loggers("root"):
            quantize_dynamic(str(onnx_path), str(int8), weight_type=QuantType.QInt8)
        variants["ort: int8 dynamic quant (*)"] = session(int8)
    except Exception as e:  # informative extra only
        print(f"(int8 variant skipped: {type(e).__name__}: {e})")
    return variants


def _int8_cosine(variants: dict[str, Callable], reference: Callable, x: np.ndarray) -> float | None:
    run = variants.get("ort: int8 dynamic quant (*)")
    if run is None:
        return None
    a, b = run(x)[1], reference(x)[1]
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return float(cos.mean())


def _backends(workdir: Path, threads: int | None, max_batch: int, explore: bool = False) -> dict[str, dict[str, Callable]]:
    """Runner groups, each timed side by side: "cpu" and "cuda", plus one pair per explored variant."""
    teacher, contract = _teacher()
    encoder, contract = rebuild_at_size(teacher.state_dict(), contract)
    onnx_path = workdir / "encoder.onnx"
    with quiet_loggers("timm"):
        export_onnx(encoder, contract, onnx_path)
    eager = TokenEncoder(teacher).eval()  # timm as trained: fused attention on (torch's fastest)
    torch_cpu = _torch_runner(eager, "cpu")
    ort_cpu = _ort_runner(make_ort_session(onnx_path, "cpu", threads=threads), contract)
    groups: dict[str, dict[str, Callable]] = {"cpu": {"torch eager": torch_cpu, "onnxruntime": ort_cpu}}
    if explore:
        variants = _ort_variants(encoder, contract, onnx_path, workdir, threads)
        x = np.random.default_rng(1).standard_normal((4, 3, SIZE, SIZE), dtype=np.float32)
        cos = _int8_cosine(variants, ort_cpu, x)
        if cos is not None:
            print(f"(*) int8 dynamic quantisation: patch-token cosine vs fp32 = {cos:.4f}; not TensorRT-parsable")
        for name, variant in variants.items():
            groups[f"cpu|{name}"] = {"torch eager": torch_cpu, name: variant}
    have = import_ort().get_available_providers()
    if torch.cuda.is_available():
        import copy

        from vidistill.runtime.backends.torch import TorchEncoder

        gpu: dict[str, Callable] = {"torch eager": _torch_runner(copy.deepcopy(eager), "cuda")}
        gpu["torch bf16 (runtime)"] = TorchEncoder(copy.deepcopy(encoder), contract, "cuda", precision="bf16").run
        if CUDA_EP in have:
            gpu["onnxruntime CUDA EP"] = _ort_runner(make_ort_session(onnx_path, "cuda"), contract)
        if TRT_EP in have:
            gpu["onnxruntime TensorRT EP"] = _ort_runner(
                make_ort_session(onnx_path, "tensorrt", max_batch=max_batch), contract)
        from vidistill.export.tensorrt_engine import build_engine
        from vidistill.runtime.backends.tensorrt import tensorrt_problem

        if tensorrt_problem() is None:
            engine = workdir / "encoder.engine"
            build_engine(onnx_path, engine, contract, precision="fp16", max_batch=max_batch)
            gpu["tensorrt engine fp16"] = _trt_runner(engine, contract)
        groups["cuda"] = gpu
    return groups


def run(
    quick: bool = True, batches: tuple[int, ...] = (1, 32), threads: int | None = None, explore: bool = False
) -> list[dict]:
    """Rows: backend, device, batch, latency_ms, throughput (img/s), speedup vs torch eager
    (the torch eager timed in the same group, side by side)."""
    if threads:
        torch.set_num_threads(threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="vidistill-bench-") as tmp:
        groups = _backends(Path(tmp), threads, max(batches), explore)
        rng = np.random.default_rng(0)
        for batch in batches:
            x = rng.standard_normal((batch, 3, SIZE, SIZE), dtype=np.float32)
            for group, runners in groups.items():
                device, _, variant = group.partition("|")
                rounds = (10 if batch == 1 else 3) if quick else (50 if batch == 1 else 10)
                if device == "cuda":
                    rounds *= 5
                samples = interleaved({name: (lambda run=run, x=x: run(x)) for name, run in runners.items()}, rounds)
                medians = {name: statistics.median(s) for name, s in samples.items()}
                base = medians["torch eager"]
                for name, seconds in medians.items():
                    if variant and name == "torch eager":
                        continue  # the variant's own baseline; the main group reports torch
                    rows.append({
                        "backend": name, "device": device, "batch": batch,
                        "latency_ms": seconds * 1e3, "throughput": batch / seconds,
                        "speedup_vs_torch": base / seconds,
                    })
    return rows


def format_table(rows: list[dict]) -> str:
    head = f"{'device':<6} {'batch':>5}  {'backend':<28} {'latency ms':>11} {'img/s':>9} {'vs torch':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['device']:<6} {r['batch']:>5}  {r['backend']:<28} {r['latency_ms']:>11.1f} "
            f"{r['throughput']:>9.1f} {r['speedup_vs_torch']:>8.2f}x"
        )
    return "\n".join(lines)


def goal_lines(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        if r["device"] == "cpu" and r["backend"] == "onnxruntime" and r["batch"] in GOALS:
            goal = GOALS[r["batch"]]
            verdict = "met" if r["speedup_vs_torch"] >= goal else "MISSED"
            out.append(f"goal ORT >= {goal}x torch at batch {r['batch']}: {r['speedup_vs_torch']:.2f}x ({verdict})")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="more rounds (default: quick)")
    p.add_argument("--batches", default="1,32", help="comma-separated batch sizes (default: 1,32)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch and ORT intra-op threads (default: each library's own default)")
    p.add_argument("--explore", action="store_true", help="also time ONNX Runtime session/export variants")
    args = p.parse_args()
    batches = tuple(int(b) for b in args.batches.split(","))
    rows = run(quick=not args.full, batches=batches, threads=args.threads, explore=args.explore)
    ort = import_ort()
    print(f"{ARCH} at {SIZE} px, random init | torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"onnxruntime {ort.__version__}, {os.cpu_count()} CPUs visible")
    print(format_table(rows))
    for line in goal_lines(rows):
        print(line)


if __name__ == "__main__":
    main()
