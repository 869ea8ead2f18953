"""`vidistill export`: safetensors/timm drop-in, ONNX + ONNX Runtime parity, graph checks, errors.

One cpu-tiny checkpoint (ViT-Tiny/16 at 96 px) is exported once per module and shared; the
ViT-S/16 224 export is slow-marked. TensorRT tests run only where tensorrt and CUDA are.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from vidistill import cli
from vidistill.config import build_config
from vidistill.contract import CONTRACT_VERSION, EncoderContract
from vidistill.errors import CheckpointError, VidistillError
from vidistill.export import parity
from vidistill.export.errors import MissingBackendError, ParityError
from vidistill.export.graph_check import TRT_SUPPORTED_OPS, check_graph
from vidistill.export.manifest import sha256_file
from vidistill.export.pipeline import ExportOptions, export_checkpoint
from vidistill.runtime.checkpoints import backbone_state
from vidistill.runtime.ort import make_ort_session, ort_providers, parse_device, read_contract
from vidistill.runtime.torch_model import TokenEncoder, load_teacher_backbone, rebuild_at_size
from vidistill.train.checkpoint import write_random_init_checkpoint

REPO = Path(__file__).resolve().parents[1]
TRT_EP, CUDA_EP, CPU_EP = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    return write_random_init_checkpoint(build_config("cpu-tiny"), tmp_path_factory.mktemp("tiny") / "run")


@pytest.fixture(scope="module")
def tiny_export(tiny_ckpt):
    return export_checkpoint(ExportOptions(source=tiny_ckpt))


@pytest.fixture(scope="module")
def teacher(tiny_ckpt):
    """The checkpoint's teacher as training runs it (dynamic size) and the export's contract."""
    model, contract, _ = load_teacher_backbone(tiny_ckpt)
    return TokenEncoder(model).eval(), dataclasses.replace(contract, version=CONTRACT_VERSION)


def _cli(argv: list[str], monkeypatch=None) -> int:
    """``vidistill ARGV`` in-process, the real CLI with every command registered."""
    return cli.main(argv)


def _tensorrt_ready() -> bool:
    from vidistill.runtime.backends.tensorrt import tensorrt_problem

    return tensorrt_problem() is None


# ------------------------------------------------------------------- the default export


def test_export_writes_verified_artefacts(tiny_export, tiny_ckpt):
    out = tiny_export.output
    assert out == tiny_ckpt.parent / "export"
    names = {"encoder.safetensors", "config.json", "encoder.onnx", "manifest.json"}
    assert names <= {p.name for p in out.iterdir()}
    assert not list(out.glob(".export-*")), "staging folder left behind"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source_checkpoint"] == str(tiny_ckpt.resolve())
    for name, info in manifest["artifacts"].items():
        assert info["sha256"] == sha256_file(out / name) and info["bytes"] == (out / name).stat().st_size
    diffs = manifest["parity"]["onnxruntime"]["max_abs_diff"]
    assert set(diffs) == {"1", "3", "8"} and max(diffs.values()) <= 1e-4
    assert manifest["parity"]["timm_reload"]["max_abs_diff"] <= 1e-5
    assert {"torch", "timm", "onnx", "onnxruntime"} <= set(manifest["tools"])
    onnx_info = manifest["artifacts"]["encoder.onnx"]
    assert onnx_info["opset"] >= 17 and onnx_info["exporter"] in ("dynamo", "legacy")
    assert onnx_info["input"] == {"name": "pixels", "shape": ["batch", 3, 96, 96], "dtype": "float32"}
    assert onnx_info["outputs"] == {"cls": ["batch", 192], "patch_tokens": ["batch", 36, 192]}
    assert manifest["contract"]["grid_size"] == [6, 6]


def test_onnx_dynamic_batch_matches_teacher(tiny_export, teacher):
    model, contract = teacher
    session = make_ort_session(tiny_export.output / "encoder.onnx", "cpu")
    (inp,) = session.get_inputs()
    assert inp.name == "pixels" and inp.shape[1:] == [3, 96, 96] and isinstance(inp.shape[0], str)
    assert [o.name for o in session.get_outputs()] == ["cls", "patch_tokens"]
    for batch in (1, 3, 8):
        x = torch.randn(batch, 3, 96, 96)
        cls, tokens = session.run(None, {"pixels": x.numpy()})
        assert cls.shape == (batch, 192) and tokens.shape == (batch, 36, 192)
        ref = parity.torch_outputs(model, x)
        assert parity.max_abs_diff((cls, tokens), ref) <= 1e-4


def test_metadata_props_carry_the_contract(tiny_export, teacher):
    _, contract = teacher
    path = tiny_export.output / "encoder.onnx"
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    assert EncoderContract.from_json(meta["vidistill.contract"]) == contract
    assert meta["vidistill.image_size"] == "96x96" and meta["vidistill.resize"] == "crop bicubic"
    assert meta["vidistill.mean"] == "0.485,0.456,0.406" and meta["vidistill.std"] == "0.229,0.224,0.225"
    assert read_contract(make_ort_session(path, "cpu")) == contract == read_contract(path)
    config = json.loads((tiny_export.output / "config.json").read_text())
    assert EncoderContract.from_dict(config["vidistill"]) == contract
    assert config["pretrained_cfg"]["mean"] == list(contract.mean) and config["num_classes"] == 0


def test_timm_loads_the_safetensors_without_vidistill(tiny_export, teacher, tmp_path):
    """The exact call a timm user writes, in a fresh interpreter that never imports vidistill."""
    model, _ = teacher
    x = torch.randn(2, 3, 96, 96)
    np.save(tmp_path / "x.npy", x.numpy())
    code = textwrap.dedent(f"""
        import json, sys
        import numpy as np, timm, torch
        from packaging.version import Version
        d = {str(tiny_export.output)!r}
        cfg = json.load(open(d + "/config.json"))
        size = cfg["pretrained_cfg"]["input_size"][-1]
        models = {{
            "overlay": timm.create_model(
                cfg["architecture"], pretrained=True, num_classes=0, img_size=size,
                pretrained_cfg_overlay=dict(file=d + "/encoder.safetensors", custom_load=False)),
            "local-dir": timm.create_model("local-dir:" + d, pretrained=True),
        }}
        if Version(timm.__version__) >= Version("1.0.31"):  # older timm needs custom_load=False
            models["bare overlay"] = timm.create_model(
                cfg["architecture"], pretrained=True, num_classes=0, img_size=size,
                pretrained_cfg_overlay=dict(file=d + "/encoder.safetensors"))
        x = torch.from_numpy(np.load({str(tmp_path / "x.npy")!r}))
        with torch.no_grad():
            np.savez({str(tmp_path / "out.npz")!r}, **{{k: m.eval().forward_features(x).numpy() for k, m in models.items()}})
        assert not [m for m in sys.modules if m.startswith("vidistill")], "vidistill was imported"
    """)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, timeout=120)
    with torch.no_grad():
        ref = model.backbone.forward_features(x).numpy()
    outputs = np.load(tmp_path / "out.npz")
    assert {"overlay", "local-dir"} <= set(outputs.files)
    for name in outputs.files:
        assert np.abs(outputs[name] - ref).max() <= 1e-5, name


def test_exported_graph_passes_the_static_check(tiny_export):
    model = onnx.load(str(tiny_export.output / "encoder.onnx"))
    assert check_graph(model) == []
    ops = {n.op_type for n in model.graph.node}
    assert "LayerNormalization" in ops and "Dropout" not in ops and ops <= TRT_SUPPORTED_OPS


# ------------------------------------------------------------------- options and paths


def test_image_size_resamples_the_position_embedding_once(tiny_ckpt, tmp_path):
    result = export_checkpoint(ExportOptions(source=tiny_ckpt, output=tmp_path, image_size=64, parity_batches=(1, 3)))
    contract = read_contract(tmp_path / "encoder.onnx")
    assert contract.image_size == (64, 64) and contract.num_patches == 16
    assert max(result.manifest["parity"]["onnxruntime"]["max_abs_diff"].values()) <= 1e-4
    ops = {n.op_type for n in onnx.load(str(tmp_path / "encoder.onnx")).graph.node}
    assert "Resize" not in ops  # no run-time resampling in the graph


def test_bad_image_size_is_a_clear_error(tiny_ckpt, tmp_path, monkeypatch, capsys):
    state, contract, _ = backbone_state(tiny_ckpt)
    with pytest.raises(VidistillError, match="multiple of the patch size"):
        rebuild_at_size(state, contract, (96, 100))
    for bad in ("100", "96x", "axb"):
        assert _cli(["export", str(tiny_ckpt), "-o", str(tmp_path / bad), "--image-size", bad], monkeypatch) != 0
        err = capsys.readouterr().err
        assert "--image-size" in err or "image size" in err, err
        assert not (tmp_path / bad / "encoder.safetensors").exists()


def test_no_path_exports_the_latest_run(tiny_ckpt, tmp_path, monkeypatch):
    run = tmp_path / "runs" / "20260101-000000"
    run.mkdir(parents=True)
    (run / "checkpoint.pt").symlink_to(tiny_ckpt)
    monkeypatch.chdir(tmp_path)
    assert _cli(["export", "--no-onnx"], monkeypatch) == 0
    assert (run / "export" / "encoder.safetensors").is_file() and (run / "export" / "config.json").is_file()
    assert not (run / "export" / "encoder.onnx").exists()


def test_a_timm_hub_folder_exports_like_a_run(tmp_path, monkeypatch):
    """The encoder a team starts from (timm's hub layout, written by timm's own save_for_hf) goes
    through the same export and checks as a trained run, and the ONNX it ships computes what the
    timm model computes on the contract's preprocessing."""
    import timm
    from timm.models._hub import save_for_hf

    from vidistill.runtime import load_encoder

    torch.manual_seed(3)
    args = {"img_size": 64, "embed_dim": 64, "depth": 2, "num_heads": 2}
    model = timm.create_model("vit_tiny_patch16_224", num_classes=0, **args).eval()
    hub = tmp_path / "base"
    save_for_hf(model, str(hub), model_args=args, safe_serialization=True)
    out = tmp_path / "base-export"
    assert _cli(["export", str(hub), "--output", str(out)], monkeypatch) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source_checkpoint"] == str((hub / "model.safetensors").resolve())
    assert manifest["contract"]["image_size"] == [64, 64] and manifest["contract"]["model_name"] == "vit_tiny_patch16_224"
    assert max(manifest["parity"]["onnxruntime"]["max_abs_diff"].values()) <= 1e-4
    encoder = load_encoder(out, backend="onnx", device="cpu")
    frames = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    got = encoder.encode(frames)
    pixels = (torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255 - torch.tensor(encoder.contract.mean)[:, None, None]) \
        / torch.tensor(encoder.contract.std)[:, None, None]
    with torch.no_grad():
        tokens = model.forward_features(pixels)
    np.testing.assert_allclose(np.asarray(got.cls), tokens[:, 0].numpy(), atol=1e-4)
    np.testing.assert_allclose(np.asarray(got.patch_tokens), tokens[:, 1:].numpy(), atol=1e-4)


# ------------------------------------------------------------------------------ errors


@pytest.fixture()
def bad_checkpoints(tiny_ckpt, tmp_path) -> dict[str, Path]:
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    data = tiny_ckpt.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.txt"
    text.write_text("this is not a checkpoint\n")
    return {"foreign": foreign, "truncated": truncated, "text": text}


@pytest.mark.parametrize("kind", ["foreign", "truncated", "text"])
def test_bad_checkpoint_is_a_clear_error(kind, bad_checkpoints, tmp_path, monkeypatch, capsys):
    path = bad_checkpoints[kind]
    code = _cli(["export", str(path), "--output", str(tmp_path / "out")], monkeypatch)
    err = capsys.readouterr().err
    assert code != 0 and str(path) in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_bad_checkpoint_through_python_m_vidistill(bad_checkpoints, tmp_path):
    path = bad_checkpoints["text"]
    proc = subprocess.run([sys.executable, "-m", "vidistill", "export", str(path)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    assert str(path) in proc.stderr and "Traceback" not in proc.stderr + proc.stdout


def test_failed_parity_leaves_existing_files_untouched(tiny_ckpt, tmp_path, monkeypatch):
    out = tmp_path / "export"
    out.mkdir()
    old = {"encoder.onnx": b"the user's previous onnx", "manifest.json": b"{}", "notes.txt": b"keep me"}
    for name, data in old.items():
        (out / name).write_bytes(data)
    real = parity.torch_outputs
    monkeypatch.setattr(parity, "torch_outputs", lambda m, x: tuple(a + 1e-2 for a in real(m, x)))
    with pytest.raises(ParityError, match="does not match"):
        export_checkpoint(ExportOptions(source=tiny_ckpt, output=out, parity_batches=(1,)))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old  # nothing added, nothing changed


def test_trt_without_tensorrt_says_what_to_install(tiny_ckpt, tmp_path, monkeypatch, capsys):
    if _tensorrt_ready():
        pytest.skip("tensorrt and CUDA are present: the engine tests cover --trt")
    code = _cli(["export", str(tiny_ckpt), "-o", str(tmp_path), "--trt", "--no-onnx"], monkeypatch)
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert "pip install tensorrt" in err and "written" in err
    for name in ("encoder.safetensors", "config.json", "encoder.onnx", "manifest.json"):
        assert (tmp_path / name).is_file(), name  # --trt implies the ONNX file
    assert not (tmp_path / "encoder.engine").exists()


# ----------------------------------------------------------------------- static check


def _graph(nodes, inputs=("x",), initializers=(), opset=18) -> onnx.ModelProto:
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [2])  # noqa: E731
    graph = helper.make_graph(
        nodes, "g", [vi(n) for n in inputs], [vi("y")],
        initializer=[helper.make_tensor(n, TensorProto.FLOAT, [2], [1.0, 2.0]) for n in initializers],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_static_check_accepts_a_plain_graph():
    assert check_graph(_graph([helper.make_node("Relu", ["x"], ["y"])])) == []


def test_static_check_rejects_an_unknown_op():
    problems = check_graph(_graph([helper.make_node("FluxCapacitor", ["x"], ["y"])]))
    assert any("FluxCapacitor" in p and "not supported" in p for p in problems)
    custom = _graph([helper.make_node("Attention", ["x"], ["y"], domain="com.microsoft")])
    assert any("com.microsoft::Attention" in p for p in check_graph(custom))


def test_static_check_rejects_dropout_and_training_mode():
    dropout = _graph([helper.make_node("Dropout", ["x"], ["y"])])
    assert any("training-only" in p for p in check_graph(dropout))
    bn = _graph([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], training_mode=1)],
                initializers=("s", "b", "m", "v"))
    assert any("training mode" in p for p in check_graph(bn))


def test_static_check_rejects_unfolded_constants():
    nodes = [
        helper.make_node("Constant", [], ["c"], value=helper.make_tensor("v", TensorProto.FLOAT, [2], [1.0, 1.0])),
        helper.make_node("Mul", ["w", "c"], ["wc"]),  # initializer * Constant: foldable
        helper.make_node("Add", ["x", "wc"], ["y"]),
    ]
    problems = check_graph(_graph(nodes, initializers=("w",)))
    assert any("constant folding" in p and "Mul" in p for p in problems)


def test_static_check_rejects_an_opset_tensorrt_cannot_parse():
    assert any("opset 23" in p for p in check_graph(_graph([helper.make_node("Relu", ["x"], ["y"])], opset=23)))


# ------------------------------------------------------------------------ the runtime


def test_ort_providers_orders_and_configures():
    assert ort_providers("cpu", available=[TRT_EP, CUDA_EP, CPU_EP]) == [CPU_EP]
    contract = EncoderContract("vit_tiny_patch16_224", 96, 16, 192)
    providers = ort_providers("auto", available=[TRT_EP, CUDA_EP, CPU_EP], contract=contract, max_batch=8)
    (trt_name, trt_opts), (cuda_name, _), cpu = providers
    assert (trt_name, cuda_name, cpu) == (TRT_EP, CUDA_EP, CPU_EP)
    assert trt_opts["trt_fp16_enable"] and trt_opts["trt_engine_cache_enable"]
    assert trt_opts["trt_profile_min_shapes"] == "pixels:1x3x96x96"
    assert trt_opts["trt_profile_opt_shapes"] == "pixels:4x3x96x96"
    assert trt_opts["trt_profile_max_shapes"] == "pixels:8x3x96x96"
    assert ort_providers("auto", available=[CPU_EP]) == [CPU_EP]
    assert ort_providers("cuda:1", available=[CUDA_EP, CPU_EP]) == [(CUDA_EP, {"device_id": 1}), CPU_EP]
    with pytest.raises(MissingBackendError, match="onnxruntime-gpu"):
        ort_providers("tensorrt", available=[CPU_EP])
    with pytest.raises(ValueError):
        parse_device("tpu")


def test_make_ort_session_rejects_missing_and_garbage_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        make_ort_session(tmp_path / "nope.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not onnx at all")
    with pytest.raises(CheckpointError, match="garbage.onnx"):
        make_ort_session(garbage, "cpu")


def test_runtime_imports_without_torch(tiny_export):
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any `import torch` now fails
        import numpy as np
        from vidistill.runtime.ort import make_ort_session, read_contract, session_device
        s = make_ort_session({str(tiny_export.output / "encoder.onnx")!r}, "auto")
        c = read_contract(s)
        cls, tokens = s.run(None, {{c.input_name: np.zeros((2, 3, *c.image_size), np.float32)}})
        assert tokens.shape == (2, c.num_patches, c.embed_dim) and session_device(s) in ("cpu", "cuda", "tensorrt")
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ----------------------------------------------------------------------------- ViT-S


@pytest.mark.slow
def test_vit_small_224_export_and_parity(tmp_path):
    cfg = build_config("paper", overrides={"model.out_dim": 1024})  # the head is not exported
    ckpt = write_random_init_checkpoint(cfg, tmp_path / "run")
    result = export_checkpoint(ExportOptions(source=ckpt))
    assert read_contract(result.output / "encoder.onnx").num_patches == 196
    diffs = result.manifest["parity"]["onnxruntime"]["max_abs_diff"]
    assert max(diffs.values()) <= 1e-4
    assert check_graph(onnx.load(str(result.output / "encoder.onnx"))) == []
    os.remove(ckpt)


def test_session_threads_follow_the_cpus_this_process_may_use(monkeypatch):
    from vidistill.runtime import ort as runtime

    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 16)
    assert runtime.session_options().intra_op_num_threads == 2  # pinned: not ORT's whole-machine count
    assert runtime.session_options(threads=3).intra_op_num_threads == 3
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 2)
    assert runtime.session_options().intra_op_num_threads == 0  # not pinned: ORT's own default


@pytest.mark.parametrize("opset", [16, 21])
def test_opset_outside_the_tensorrt_range_is_refused_up_front(opset, tiny_ckpt, tmp_path):
    with pytest.raises(VidistillError, match=f"--opset {opset}"):
        export_checkpoint(ExportOptions(source=tiny_ckpt, output=tmp_path, opset=opset))
    assert not any(tmp_path.iterdir())
