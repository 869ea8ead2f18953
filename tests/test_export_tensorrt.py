"""TensorRT engine: the build flow against a stand-in of the TensorRT 10 API (runs everywhere),
and the real build + GPU verification (runs only where tensorrt and CUDA are)."""

from __future__ import annotations

import json
import logging
import types
from pathlib import Path

import pytest
import torch

from vidistill.config import build_config
from vidistill.contract import EncoderContract
from vidistill.export import tensorrt_engine
from vidistill.export.errors import ExportError, MissingBackendError
from vidistill.export.manifest import sha256_file
from vidistill.export.parity import check_cosine
from vidistill.export.pipeline import ExportOptions, export_checkpoint
from vidistill.runtime.backends.tensorrt import TensorRTEncoder, tensorrt_problem
from vidistill.runtime.torch_model import TokenEncoder, load_teacher_backbone
from vidistill.train.checkpoint import write_random_init_checkpoint

CONTRACT = EncoderContract("vit_tiny_patch16_224", 96, 16, 192)


# ------------------------------------------------------- a stand-in for `import tensorrt`


class _Layer:
    def __init__(self, kind):
        self.type, self.precision, self.output_types = kind, None, {}

    def set_output_type(self, index, dtype):
        self.output_types[index] = dtype


class _Cache:
    def __init__(self, data: bytes):
        self.data = data

    def serialize(self) -> bytes:
        return self.data + b"+timings"


def make_fake_trt(*, weak_typing: bool = True, parse_ok: bool = True) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.99.0-fake" if weak_typing else "11.0.0-fake"
    trt.float32 = "float32"
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    flags = {"PREFER_PRECISION_CONSTRAINTS": "PREFER"}
    if weak_typing:
        flags |= {"FP16": "FP16", "BF16": "BF16"}
    trt.BuilderFlag = type("BuilderFlag", (), flags)
    trt.MemoryPoolType = type("MemoryPoolType", (), {"WORKSPACE": "WORKSPACE"})
    trt.LayerType = type("LayerType", (), {"NORMALIZATION": "NORM", "MATRIX_MULTIPLY": "MM"})
    trt.built = []

    class Network:
        def __init__(self, flags):
            assert flags == 0  # explicit batch, weakly typed
            self.layers = [_Layer("MM"), _Layer("NORM"), _Layer("MM")]
            self.num_layers = len(self.layers)

        def get_layer(self, i):
            return self.layers[i]

    class OnnxParser:
        def __init__(self, network, logger):
            self.num_errors = 0 if parse_ok else 1

        def parse_from_file(self, path):
            assert Path(path).is_file()
            return parse_ok

        def get_error(self, i):
            return "In node 3 (importFluxCapacitor): UNSUPPORTED_NODE"

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            self.shapes = (name, lo, opt, hi)

    class Config:
        def __init__(self):
            self.flags, self.profiles, self.pool, self.cache = set(), [], {}, None

        def set_memory_pool_limit(self, pool, size):
            self.pool[pool] = size

        def set_flag(self, flag):
            self.flags.add(flag)

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)

        def create_timing_cache(self, data):
            return _Cache(bytes(data))

        def set_timing_cache(self, cache, ignore_mismatch):
            if cache.data.startswith(b"other-gpu"):
                return False
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            trt.built.append((network, config))
            return b"ENGINE"

    trt.Builder, trt.OnnxParser = Builder, OnnxParser
    return trt


@pytest.fixture()
def fake_trt(monkeypatch, tmp_path):
    def install(**kwargs):
        trt = make_fake_trt(**kwargs)
        monkeypatch.setitem(__import__("sys").modules, "tensorrt", trt)
        monkeypatch.setattr(tensorrt_engine.torch.cuda, "is_available", lambda: True)  # the runtime's probe too
        monkeypatch.setattr(tensorrt_engine.torch.cuda, "get_device_name", lambda *a: "Fake GPU")
        return trt

    onnx_path = tmp_path / "encoder.onnx"
    onnx_path.write_bytes(b"onnx")
    return install, onnx_path


def test_build_engine_follows_the_tensorrt10_recipe(fake_trt, tmp_path):
    install, onnx_path = fake_trt
    trt = install()
    cache = tmp_path / "cache" / "trt_timing.cache"
    info = tensorrt_engine.build_engine(onnx_path, tmp_path / "e.engine", CONTRACT, max_batch=8, timing_cache=cache)
    assert (tmp_path / "e.engine").read_bytes() == b"ENGINE"
    assert info == {"precision": "fp16", "max_batch": 8, "tensorrt": trt.__version__, "gpu": "Fake GPU",
                    "timing_cache": str(cache)}
    network, config = trt.built[-1]
    assert config.flags == {"FP16", "PREFER"} and config.pool["WORKSPACE"] == tensorrt_engine.WORKSPACE_BYTES
    assert config.profiles[0].shapes == ("pixels", (1, 3, 96, 96), (4, 3, 96, 96), (8, 3, 96, 96))
    norm = [layer for layer in network.layers if layer.type == "NORM"]
    assert norm[0].precision == "float32" and norm[0].output_types == {0: "float32"}
    assert all(layer.precision is None for layer in network.layers if layer.type == "MM")
    assert cache.read_bytes() == b"+timings"
    # the second build starts from the saved timing cache and extends it
    tensorrt_engine.build_engine(onnx_path, tmp_path / "e.engine", CONTRACT, max_batch=8, timing_cache=cache)
    assert cache.read_bytes() == b"+timings+timings"


def test_build_engine_precisions(fake_trt, tmp_path):
    install, onnx_path = fake_trt
    trt = install()
    for precision, flags in (("bf16", {"BF16"}), ("fp32", set())):
        tensorrt_engine.build_engine(onnx_path, tmp_path / "e.engine", CONTRACT, precision=precision,
                                     timing_cache=tmp_path / "c")
        assert trt.built[-1][1].flags == flags
        assert all(layer.precision is None for layer in trt.built[-1][0].layers)


def test_timing_cache_from_another_gpu_is_replaced(fake_trt, tmp_path, caplog):
    install, onnx_path = fake_trt
    install()
    cache = tmp_path / "trt_timing.cache"
    cache.write_bytes(b"other-gpu timings")
    with caplog.at_level(logging.WARNING):
        tensorrt_engine.build_engine(onnx_path, tmp_path / "e.engine", CONTRACT, timing_cache=cache)
    assert "another GPU" in caplog.text and cache.read_bytes() == b"+timings"


def test_parser_errors_and_tensorrt11_are_clear(fake_trt, tmp_path):
    install, onnx_path = fake_trt
    install(parse_ok=False)
    with pytest.raises(ExportError, match="FluxCapacitor"):
        tensorrt_engine.build_engine(onnx_path, tmp_path / "e.engine", CONTRACT, timing_cache=tmp_path / "c")
    install(weak_typing=False)
    with pytest.raises(MissingBackendError, match=r"tensorrt>=10,<11"):
        tensorrt_engine.build_engine(onnx_path, tmp_path / "e.engine", CONTRACT, timing_cache=tmp_path / "c")
    tensorrt_engine.build_engine(onnx_path, tmp_path / "e.engine", CONTRACT, precision="fp32",
                                 timing_cache=tmp_path / "c")  # fp32 builds on TensorRT 11 too


def test_missing_tensorrt_names_the_install(fake_trt, monkeypatch, tmp_path):
    _, onnx_path = fake_trt
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)
    with pytest.raises(MissingBackendError, match=r"pip install tensorrt"):
        tensorrt_engine.build_engine(onnx_path, tmp_path / "e.engine", CONTRACT, timing_cache=tmp_path / "c")
    assert not (tmp_path / "e.engine").exists()


# --------------------------------------------------------------- the real thing (GPU only)


def _tensorrt_ready() -> bool:
    return tensorrt_problem() is None


needs_trt = pytest.mark.skipif("not _tensorrt_ready()", reason="needs tensorrt and a CUDA GPU")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    ckpt = write_random_init_checkpoint(build_config("cpu-tiny"), tmp_path_factory.mktemp("trt") / "run")
    export_checkpoint(ExportOptions(source=ckpt))
    model, contract, _ = load_teacher_backbone(ckpt)
    return ckpt, ckpt.parent / "export", TokenEncoder(model).eval(), contract


@pytest.mark.gpu
@needs_trt
def test_tensorrt_engine_matches_teacher(tiny_run, tmp_path):
    _, export_dir, model, contract = tiny_run
    engine, cache = tmp_path / "encoder.engine", tmp_path / "timing.cache"
    info = tensorrt_engine.build_engine(export_dir / "encoder.onnx", engine, contract, max_batch=8, timing_cache=cache)
    assert engine.stat().st_size > 0 and cache.is_file() and info["precision"] == "fp16"
    served = TensorRTEncoder(engine, "cuda", contract=contract)  # the runner a robot uses
    cos = check_cosine(model, served, "encoder.engine", batches=(1, 3, 8))
    assert cos["cosine_patch_tokens"] >= 0.999
    cls, tokens = served.run(torch.randn(3, 3, 96, 96).numpy())
    assert cls.shape == (3, 192) and tokens.shape == (3, 36, 192)
    size = cache.stat().st_size
    tensorrt_engine.build_engine(export_dir / "encoder.onnx", engine, contract, max_batch=8, timing_cache=cache)
    assert cache.stat().st_size >= size  # reused, not reset


@pytest.mark.gpu
@needs_trt
def test_export_trt_end_to_end(tiny_run, tmp_path):
    ckpt = tiny_run[0]
    result = export_checkpoint(ExportOptions(source=ckpt, output=tmp_path, trt=True, max_batch=8,
                                             timing_cache=tmp_path / "timing.cache"))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert tmp_path / "encoder.engine" in result.files
    assert manifest["parity"]["tensorrt"]["cosine_patch_tokens"] >= 0.999
    assert manifest["artifacts"]["encoder.engine"]["sha256"] == sha256_file(tmp_path / "encoder.engine")
