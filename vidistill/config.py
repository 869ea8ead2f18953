"""Typed configuration: the one source of truth for defaults.

The dataclass defaults are the paper's run (ViT-S/16 at 224 px, METHOD.md). A preset is a
small YAML overlay in ``vidistill/presets/``; a ``--config file.yaml`` overlays that; CLI flags
overlay last. The resolved config is saved with every run and checkpoint.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vidistill.contract import IMAGENET_MEAN, IMAGENET_STD

PRESET_DIR = Path(__file__).parent / "presets"



class Objective(str, enum.Enum):
    """What is trained: the method, one of its terms alone, or plain DINO (Table 1 rows).

    A ``str`` so that configs, YAML and comparisons with the plain names keep working; parsed
    once (``Objective("dense")``), then asked what it uses instead of re-parsing the name.
    """

    METHOD = "dense+global"
    DENSE = "dense"
    GLOBAL = "global"
    DINO = "dino"

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__

    @property
    def uses_dense(self) -> bool:
        """The dense next-frame term (and with it the predictor)."""
        return self in (Objective.METHOD, Objective.DENSE)

    @property
    def uses_global(self) -> bool:
        """The method's global term ([CLS] of future frames vs their local views)."""
        return self in (Objective.METHOD, Objective.GLOBAL)

    @property
    def is_frame_dino(self) -> bool:
        """Plain DINO on frames (the baselines): single images, no next-frame target."""
        return self is Objective.DINO


OBJECTIVES = tuple(o.value for o in Objective)


@dataclass
class DataConfig:
    videos: list[str] = field(default_factory=list)
    cameras: list[str] = field(default_factory=list)  # robot-log camera names to train on; [] = every RGB camera
    num_frames: int = 3  # K: frames per clip
    frame_stride: int = 30  # Δ: frames between consecutive clip frames
    clip_stride: int = 1  # keep every n-th valid clip start (subsampling for long logs)
    global_size: int = 224
    local_size: int = 96
    num_local: int = 5  # L: local crops per future frame (per frame for the DINO baselines)
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    pre_crop: bool = True
    pre_crop_scale: tuple[float, float] = (0.05, 0.20)  # area fraction of the frame
    # Time-augmentation baseline (objective=dino): views split across two frames this far
    # apart; 0 = plain DINO on single frames.
    time_aug_delta: int = 0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    num_workers: int = 4
    # Max side of decoded frames before augmentation (0 = native). Decoding a 1080p frame and
    # then cropping 5-20% of it is wasteful only when frames are far larger than this.
    max_side: int = 0


@dataclass
class ModelConfig:
    arch: str = "vit_small_patch16_224"
    # Extra timm ``create_model`` kwargs that define the architecture beyond its name (e.g. a
    # hub config's ``model_args``: reg_tokens, embed_dim, ...). Travels into the contract so that
    # export and the runtime rebuild exactly this model.
    model_args: dict[str, Any] = field(default_factory=dict)
    # Where the backbone's starting weights came from ("" = random init): a timm name with a
    # pretrained tag, a hub-layout folder, a .safetensors file, or a vidistill run/export.
    init: str = ""
    drop_path: float = 0.1  # student only; the teacher has none
    out_dim: int = 16384  # see README "Choosing out_dim": 65536 on every patch token is costly
    head_hidden_dim: int = 2048
    head_bottleneck_dim: int = 256
    head_layers: int = 3
    norm_last_layer: bool = True
    predictor_depth: int = 2  # transformer blocks in the training-only predictor
    # Global loss through the predictor too (METHOD.md: off, same frame, nothing to predict).
    global_through_predictor: bool = False


@dataclass
class OptimConfig:
    epochs: int = 100
    batch_size: int = 64  # per process; the paper: 4 GPUs x 64 = 256
    base_lr: float = 5e-4  # scaled by total_batch / 256
    min_lr: float = 1e-6
    # Epoch counts below may be fractional: short runs (train.max_steps) warm up for part of an epoch.
    warmup_epochs: float = 10
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    clip_grad: float = 3.0
    freeze_last_layer_epochs: float = 1
    momentum_teacher: float = 0.996
    teacher_temp: float = 0.07
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: float = 30
    student_temp: float = 0.1
    center_momentum: float = 0.9
    # Scale lr by total_batch/256 (DINO's rule). Far too small for a few hundred CPU steps,
    # so small presets turn it off and give the lr directly.
    scale_lr: bool = True


@dataclass
class TrainConfig:
    output: str = ""  # "" = runs/<timestamp>
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "auto"  # auto | bf16 | fp16 | off  (auto: bf16 on CUDA when supported, else fp16)
    compile: bool = False
    max_steps: int = 0  # 0 = run all epochs; otherwise stop after this many optimiser steps
    checkpoint_every: int = 500  # steps; a checkpoint is also written at every epoch end
    log_every: int = 1
    tensorboard: bool = False
    progress: bool = True


@dataclass
class Config:
    objective: Objective = Objective.METHOD
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = ""

    def validate(self) -> Config:
        self.objective = Objective(self.objective)  # a plain name set in code is parsed here
        if self.model.global_through_predictor and self.objective.is_frame_dino:
            raise ValueError("model.global_through_predictor: the DINO baseline has no predictor")
        if self.data.num_frames < 2 and not self.objective.is_frame_dino:
            raise ValueError("num_frames (K) must be >= 2 for the next-frame objective")
        if self.data.frame_stride < 1:
            raise ValueError("frame_stride (Δ) must be >= 1")
        if min(self.data.global_size, self.data.local_size) < 1:
            raise ValueError("global_size and local_size must be positive (the trainer fits them to the patch size)")
        return self

    def to_dict(self) -> dict:
        return _to_plain(dataclasses.asdict(self))


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _coerce(tp: Any, value: Any) -> Any:
    """Turn a YAML/CLI value into the field's declared type."""
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ValueError(f"{value!r} is not one of {', '.join(str(m.value) for m in tp)}") from None
    origin = typing.get_origin(tp)
    if origin in (tuple, list):
        args = typing.get_args(tp)
        if isinstance(value, str):
            value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
        inner = args[0] if args else str
        items = [_coerce(inner, v) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is bool and isinstance(value, str):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {value!r}")
    if tp in (int, float, str) and value is not None:
        return tp(value)
    return value


def apply_overrides(cfg: Any, overrides: dict[str, Any], where: str = "config") -> Any:
    """Overlay a nested dict (from YAML) or dotted keys (``optim.base_lr``) onto a dataclass."""
    hints = typing.get_type_hints(type(cfg))
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head not in hints:
            valid = ", ".join(sorted(hints))
            raise ValueError(f"{where}: unknown key {key!r} (valid here: {valid})")
        current = getattr(cfg, head)
        if dataclasses.is_dataclass(current):
            if rest:
                apply_overrides(current, {rest: value}, where)
            elif isinstance(value, dict):
                apply_overrides(current, value, where)
            else:
                raise ValueError(f"{where}: {key!r} is a section, give a mapping")
        else:
            if rest:
                raise ValueError(f"{where}: {head!r} has no sub-keys")
            try:
                setattr(cfg, head, _coerce(hints[head], value))
            except (TypeError, ValueError) as e:
                raise ValueError(f"{where}: bad value for {key!r}: {e}") from None
    return cfg


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


def auto_preset() -> str:
    """Default preset: the single-GPU preset when CUDA is there, the CPU one otherwise."""
    try:
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu-tiny"
    except ImportError:  # pragma: no cover
        return "cpu-tiny"


def build_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Resolve defaults < preset < config file < overrides (dotted keys)."""
    cfg = Config()
    preset = preset or auto_preset()
    if preset not in available_presets():
        raise ValueError(f"unknown preset {preset!r}; available: {', '.join(available_presets())}")
    apply_overrides(cfg, load_yaml(PRESET_DIR / f"{preset}.yaml"), where=f"preset {preset}")
    cfg.preset = preset
    if config_file:
        apply_overrides(cfg, load_yaml(config_file), where=str(config_file))
    if overrides:
        apply_overrides(cfg, overrides, where="command line")
    return cfg.validate()


def config_from_dict(d: dict) -> Config:
    """Rebuild a Config saved with a run or checkpoint (unknown keys are an error)."""
    cfg = Config()
    apply_overrides(cfg, d, where="saved config")
    return cfg
