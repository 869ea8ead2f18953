"""Typed configuration: the one source of truth for defaults.

The dataclass defaults are the paper's run (ViT-S/16 at 224 px, docs/METHOD.md). A preset is a
small YAML overlay in ``vidistill/presets/``; a ``--config file.yaml`` overlays that; CLI flags
and ``--set`` overlay that (``build_config`` records which keys the user set); what an ``--init``
implies (its architecture, normalisation, the crop sizes its patch allows) comes last
(:func:`settle_model`, which ``build_config`` calls), and nothing later rewrites the config. The resolved config is saved with
every run and checkpoint.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from vidistill.contract import IMAGENET_MEAN, IMAGENET_STD
from vidistill.errors import VidistillError

PRESET_DIR = Path(__file__).parent / "presets"
# Why auto_preset chose a preset, for the log line that says so.
PRESET_MACHINE = {
    "adapt": "--init with CUDA",
    "adapt-cpu": "--init without CUDA: CPU sizes, ViT at 96 px crops, batch 8, out_dim 4096",
    "gpu": "CUDA",
    "cpu-tiny": "no CUDA: ViT-Ti/16 at 96 px, batch 8, from random weights, which at CPU scale beats random "
    "init on a robot log by 1-5 mIoU in 600 steps, depending on the video (benchmarks/training_signals.md); "
    "--init an encoder you "
    "trust adapts it instead",
}

log = logging.getLogger(__name__)

# Teacher centrings (vidistill/objective/centring.py): DINO's running mean, DINOv2's Sinkhorn-Knopp.
CENTRINGS = ("ema", "sinkhorn_knopp")


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



def option(default: Any = dataclasses.MISSING, help: str = "", flag: str = "", choices: Sequence[str] = (),
           **kwargs: Any) -> Any:
    """A config field with its help text (the CLI's ``--help`` and ``--print-config`` docs).

    ``flag`` (e.g. ``"batch-size"``) gives the field a short ``vidistill train`` flag; every
    field, flagged or not, is also settable with ``--set section.key=value``. ``choices``
    restricts a string field (checked on the command line and in files alike).
    """
    meta = {"help": help, "flag": flag, "choices": tuple(choices)}
    if "default_factory" in kwargs:
        return field(metadata=meta, **kwargs)
    return field(default=default, metadata=meta, **kwargs)


@dataclass
class DataConfig:
    videos: list[str] = option(
        default_factory=list, help="video files, frame folders, episode trees, LeRobot datasets or JPEG caches"
    )
    cameras: list[str] = option(
        default_factory=list, help="robot-log camera names to train on ([] = every RGB camera)"
    )
    fps: float = option(
        0.0, "frame rate of logs that store none (HDF5); 0 = unknown. Labels only: strides count frames",
        flag="fps",
    )
    num_frames: int = option(3, "K, frames per clip", flag="num-frames")
    frame_stride: int = option(30, "Δ, frames between consecutive clip frames", flag="frame-stride")
    clip_stride: int = option(1, "keep every n-th valid clip start (subsampling for long logs)")
    chain_length: int = option(
        0, "clips Δ apart read one after another by one worker, so a frame is decoded once for the "
        "K clips that share it (vidistill/data/clips.py); 0 = every clip from a random place",
        flag="chain-length",
    )
    views_on: str = option(
        "worker", "where a clip's views are rendered: 'worker' (each DataLoader worker, per clip) or "
        "'device' (workers only decode; the trainer renders the batch's views on the training device "
        "in a few batched calls: vidistill/data/device_views.py)",
        flag="views-on", choices=("worker", "device"),
    )
    global_size: int = option(224, "square global crop size in pixels (the encoder's training input)", flag="global-size")
    local_size: int = option(96, "local view size in pixels")
    num_local: int = option(
        5, "L, local crops per future frame; the DINO baselines take (K-1)*L crops of their image, "
        "so every Table 1 row's student sees the same number of views",
    )
    global_scale: tuple[float, float] = option((0.4, 1.0), "area fraction of the pre-crop per global view")
    local_scale: tuple[float, float] = option((0.05, 0.4), "area fraction of the pre-crop per local view")
    colour_strength: float = option(
        1.0, "scale of DINO's colour augmentation (jitter ranges, grayscale and solarize "
        "probabilities; blur stays): 1 = DINO, 0 = colours kept", flag="colour-strength",
    )
    pre_crop: bool = option(True, "one shared crop of 5-20% of the frame for all views of a clip", flag="pre-crop")
    pre_crop_scale: tuple[float, float] = option((0.05, 0.20), "area fraction of the frame")
    time_aug_delta: int = option(
        0, "dino baseline: split views across two frames this far apart (0 = single frames)", flag="time-aug-delta"
    )
    mean: tuple[float, float, float] = option(IMAGENET_MEAN, "normalisation mean (stored in the contract)")
    std: tuple[float, float, float] = option(IMAGENET_STD, "normalisation std (stored in the contract)")
    num_workers: int = option(4, "DataLoader worker processes", flag="num-workers")
    # Decoding a 1080p frame and then cropping 5-20% of it is wasteful only when frames are far
    # larger than this.
    max_side: int = option(0, "max side of decoded frames before augmentation (0 = native)")

    @property
    def frame_dino_num_local(self) -> int:
        """Local crops of the DINO baselines' image: (K−1)·L, the method's count, so that every
        Table 1 row's student sees 2 + (K−1)·L views (same compute, a fair comparison)."""
        return max(self.num_frames - 1, 1) * self.num_local


@dataclass
class ModelConfig:
    arch: str = option("vit_small_patch16_224", "any timm ViT name", flag="arch")
    # Travels into the contract so that export and the runtime rebuild exactly this model.
    model_args: dict[str, Any] = option(
        default_factory=dict,
        help="extra timm create_model kwargs beyond the name (reg_tokens, embed_dim, ...)",
    )
    init: str = option(
        "", "starting weights: timm name with a pretrained tag, hub folder, .safetensors, or a "
        "vidistill run/export (\"\" = random init); the architecture comes from it", flag="init",
    )
    drop_path: float = option(0.1, "stochastic depth of the student (the teacher has none)")
    # 65536 (DINO's [CLS] size) on every patch token is costly: README "Presets" has the table.
    out_dim: int = option(16384, "projection head output dimension", flag="out-dim")
    head_hidden_dim: int = option(2048, "projection head MLP width")
    head_bottleneck_dim: int = option(256, "projection head bottleneck (L2-normalised)")
    head_layers: int = option(3, "projection head MLP layers")
    norm_last_layer: bool = option(True, "freeze the norm of the weight-normed last layer at 1 (DINO)")
    predictor_depth: int = option(2, "transformer blocks in the training-only predictor")
    global_through_predictor: bool = option(
        False, "global loss: local [CLS] through the predictor too (docs/METHOD.md: off, same frame)"
    )


@dataclass
class OptimConfig:
    epochs: int = option(100, "epochs (the schedules span them unless --max-steps)", flag="epochs")
    batch_size: int = option(64, "clips per process (the paper: 4 GPUs x 64 = 256)", flag="batch-size")
    base_lr: float = option(5e-4, "base lr (scaled by total batch/256 unless optim.scale_lr=false)", flag="lr")
    min_lr: float = option(1e-6, "lr at the end of the cosine")
    # Epoch counts below may be fractional: short runs (train.max_steps) warm up for part of an epoch.
    warmup_epochs: float = option(10, "linear lr warm-up, epochs")
    weight_decay: float = option(0.04, "weight decay at the start (cosine)")
    weight_decay_end: float = option(0.4, "weight decay at the end")
    clip_grad: float = option(3.0, "per-parameter gradient norm cap (0 = off)")
    freeze_last_layer_epochs: float = option(1, "epochs with the head's last layer frozen")
    momentum_teacher: float = option(0.996, "teacher EMA momentum at the start (cosine to 1)")
    teacher_temp: float = option(0.07, "teacher temperature after warm-up")
    warmup_teacher_temp: float = option(0.04, "teacher temperature at the start")
    warmup_teacher_temp_epochs: float = option(30, "teacher temperature warm-up, epochs")
    student_temp: float = option(0.1, "student temperature")
    center_momentum: float = option(0.9, "teacher centre EMA momentum (centring 'ema')")
    centring: str = option(
        "ema", "teacher centring: 'ema' (DINO's running mean) or 'sinkhorn_knopp' (DINOv2's batch "
        "balancing over the prototypes)", choices=CENTRINGS,
    )
    sinkhorn_iterations: int = option(3, "Sinkhorn-Knopp iterations (centring 'sinkhorn_knopp'; DINOv2's 3)")
    # DINO's rule is far too small for a few hundred CPU steps, so small presets turn it off.
    scale_lr: bool = option(True, "scale the lr by total batch/256 (DINO's rule)")


@dataclass
class AdaptConfig:
    """Adapting a pretrained encoder (``--init``) without forgetting it; the measured recipe is
    ``presets/adapt.yaml`` (README "Start from a pretrained encoder"). Defaults: all off."""

    # A fraction of the run, not epochs: an adaptation is often a few hundred steps (--max-steps),
    # less than one epoch, and the warm-up must end well inside it whatever the run's length.
    head_warmup_fraction: float = option(
        0.0, "fraction of the run's steps with the backbone frozen while the new heads and predictor "
        "warm up; the backbone lr then ramps up linearly over as many steps",
    )
    layer_decay: float = option(1.0, "backbone layer i of L gets lr x decay^(L-i) (1 = off)")
    backbone_lr_scale: float = option(1.0, "backbone lr relative to the heads and predictor")
    gram_weight: float = option(
        0.0, "Gram anchoring (DINOv3): weight of the loss keeping the student's patch similarities "
        "close to the frozen init's (0 = off)", flag="gram-weight",
    )
    drift_every: int = option(50, "steps between feature-drift probes in log.jsonl (0 = off)")
    drift_images: int = option(8, "frames of the run's own video in the fixed drift batch")


@dataclass
class TrainConfig:
    output: str = option(
        "", "run folder; rerunning with the same folder resumes (default: runs/<first video's "
        "name>-<preset>[-<objective>], so the same command finds the same run)", flag="output",
    )
    seed: int = option(0, "random seed (weights, views, order)", flag="seed")
    device: str = option("auto", "auto = cuda if available, else cpu", flag="device", choices=("auto", "cpu", "cuda"))
    amp: str = option(
        "auto", "autocast; auto = bf16 on CUDA when supported, else fp16 on CUDA; off on CPU "
        "(bf16 helps only on CPUs with AVX-512-bf16/AMX: ask for it)",
        flag="amp", choices=("auto", "bf16", "fp16", "off"),
    )
    compile: bool = option(False, "torch.compile the student", flag="compile")
    max_steps: int = option(
        0, "stop after this many optimiser steps; the schedules span them (0 = all epochs)", flag="max-steps"
    )
    checkpoint_every: int = option(500, "steps between checkpoints (also at every epoch end)", flag="checkpoint-every")
    log_every: int = option(1, "steps between log.jsonl records")
    monitor_every: int = option(
        25, "steps between measures of the teacher's feature rank and position share (repr/* in "
        "log.jsonl: partial collapse; 0 = off)",
    )
    uniform_warning_steps: int = option(
        100, "steps of near-uniform teacher targets before the collapse monitor warns (and names the "
        "likely causes in this run)",
    )
    sync_every: int = option(
        0, "steps between reads of the step's scalars to the host (the loss check and the log "
        "records then come in bursts; never past a checkpoint); 0 = auto: every step on CPU, where a "
        "read costs nothing, every 20 on CUDA, where it stalls the queue of kernels",
    )
    tensorboard: bool = option(False, "also log to <run>/tensorboard (needs vidistill[tb])", flag="tensorboard")
    progress: bool = option(True, "progress bar with ETA")


@dataclass
class Config:
    objective: Objective = option(
        Objective.METHOD, "Table 1 rows: dense+global (the method), dense, global, dino (baseline)", flag="objective"
    )
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = option("", "the preset these values started from")
    # The dotted keys the user set (config file, flags, --set), recorded by build_config: what an
    # --init may not override and a crop size that must not be snapped. Not a setting: not saved.
    user_keys: ClassVar[frozenset[str]] = frozenset()

    def validate(self) -> Config:
        self.objective = Objective(self.objective)  # a plain name set in code is parsed here
        if self.model.global_through_predictor and self.objective.is_frame_dino:
            raise ValueError("model.global_through_predictor: the DINO baseline has no predictor")
        if self.data.num_frames < 2 and not self.objective.is_frame_dino:
            raise ValueError("num_frames (K) must be >= 2 for the next-frame objective")
        if self.data.frame_stride < 1:
            raise ValueError("frame_stride (Δ) must be >= 1")
        if self.data.chain_length < 0:
            raise ValueError(f"chain_length must be >= 0 (0 = shuffled clips), got {self.data.chain_length}")
        if self.data.fps < 0:
            raise ValueError(f"fps must be >= 0 (0 = unknown), got {self.data.fps}")
        if not 0 <= self.data.colour_strength <= 1:
            raise ValueError(f"colour_strength must be in [0, 1] (1 = DINO's recipe), got {self.data.colour_strength}")
        if self.adapt.gram_weight > 0 and self.objective is Objective.GLOBAL:
            raise ValueError("adapt.gram_weight: the 'global' objective's student sees no global view to anchor")
        if min(self.data.global_size, self.data.local_size) < 1:
            raise ValueError("global_size and local_size must be positive (the trainer fits them to the patch size)")
        for key, f in config_fields(self):
            value = self.get(key)
            if f.metadata.get("choices") and value not in f.metadata["choices"]:
                raise ValueError(f"{key} must be one of {', '.join(f.metadata['choices'])}, got {value!r}")
        return self

    def get(self, key: str) -> Any:
        """A value by dotted key (``optim.base_lr``)."""
        obj: Any = self
        for part in key.split("."):
            obj = getattr(obj, part)
        return obj

    def to_dict(self) -> dict:
        return _to_plain(dataclasses.asdict(self))


def config_fields(cfg: Any = None, prefix: str = "") -> list[tuple[str, dataclasses.Field]]:
    """Every leaf field as (dotted key, Field), sections walked in declaration order."""
    cls = cfg if isinstance(cfg, type) else type(cfg) if cfg is not None else Config
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += config_fields(tp, f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", f))
    return out


def field_type(key: str) -> Any:
    """The declared type of a dotted key."""
    cls: Any = Config
    for part in key.split("."):
        cls = typing.get_type_hints(cls)[part]
    return cls


def field_default(key: str) -> Any:
    """The dataclass default of a dotted key (before any preset)."""
    return Config().get(key)


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


def load_preset(name: str, _chain: tuple[str, ...] = ()) -> dict:
    """A preset's values; ``extends: other`` at its top takes ``other``'s values first (so a
    CPU-sized variant states only what it changes, and the recipe has one source)."""
    if name not in available_presets():
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(available_presets())}")
    if name in _chain:
        raise ValueError(f"preset {name!r} extends itself: {' -> '.join((*_chain, name))}")
    values = load_yaml(PRESET_DIR / f"{name}.yaml")
    parent = values.pop("extends", None)
    return _deep_merge(load_preset(parent, (*_chain, name)), values) if parent else values


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _coerce(tp: Any, value: Any) -> Any:
    """Turn a YAML/CLI value into the field's declared type."""
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ValueError(f"{value!r} is not one of {', '.join(str(m.value) for m in tp)}") from None
    origin = typing.get_origin(tp)
    if origin is dict:
        if isinstance(value, str):  # --set model.model_args="{reg_tokens: 4}"
            value = yaml.safe_load(value) if value.strip() else {}
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping, got {value!r}")
        return dict(value)
    if origin in (tuple, list):
        args = typing.get_args(tp)
        if isinstance(value, str):
            value = [v for v in value.strip("()[] ").split(",") if v.strip()]
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


def apply_overrides(cfg: Any, overrides: dict[str, Any], where: str = "config", _prefix: str = "") -> Any:
    """Overlay a nested dict (from YAML) or dotted keys (``optim.base_lr``) onto a dataclass."""
    hints = typing.get_type_hints(type(cfg))
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        full = f"{_prefix}{key}"
        if head not in hints:
            valid = ", ".join(sorted(hints))
            raise ValueError(f"{where}: unknown key {full!r} (valid {'in ' + _prefix[:-1] if _prefix else 'here'}: {valid})")
        current = getattr(cfg, head)
        if dataclasses.is_dataclass(current):
            if rest:
                apply_overrides(current, {rest: value}, where, f"{_prefix}{head}.")
            elif isinstance(value, dict):
                apply_overrides(current, value, where, f"{_prefix}{head}.")
            else:
                raise ValueError(f"{where}: {full!r} is a section, give a mapping")
        else:
            if rest:
                raise ValueError(f"{where}: {_prefix}{head!s} has no sub-keys")
            try:
                value = _coerce(hints[head], value)
            except (TypeError, ValueError) as e:
                raise ValueError(f"{where}: bad value for {full!r}: {e}") from None
            choices = next(f for f in dataclasses.fields(cfg) if f.name == head).metadata.get("choices")
            if choices and value not in choices:
                raise ValueError(f"{where}: {full} must be one of {', '.join(choices)}, got {value!r}")
            setattr(cfg, head, value)
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


def parse_set(items: list[str]) -> dict[str, str]:
    """``--set KEY=VALUE`` items as dotted-key overrides; values stay strings (``apply_overrides``
    turns them into each field's type, so a flag, a file and ``--set`` are read alike)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def auto_preset(init: str = "") -> str:
    """Default preset, sized to the machine: with CUDA, ``adapt`` when starting from a
    pretrained encoder (``--init``) and ``gpu`` otherwise; without, their CPU-sized variants
    ``adapt-cpu`` and ``cpu-tiny`` (a GPU-sized batch of 64 at 224 px does not finish 200 steps
    in 15 minutes on 2 cores)."""
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        cuda = False
    if init:
        return "adapt" if cuda else "adapt-cpu"
    return "gpu" if cuda else "cpu-tiny"


def build_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Resolve defaults < preset < config file < overrides (dotted keys) < what the init implies
    (:func:`settle_model`): the config every later module only reads. An unset ``train.output``
    becomes :func:`default_output` here, so ``--print-config`` shows the folder a run uses."""
    cfg = Config()
    if not preset:
        preset = auto_preset(str((overrides or {}).get("model.init", "")))
        log.info("preset %s (the default on this machine: %s; --preset picks another)", preset,
                 PRESET_MACHINE.get(preset, ""))
    apply_overrides(cfg, load_preset(preset), where=f"preset {preset}")
    cfg.preset = preset
    user_keys: set[str] = set()
    if config_file:
        from_file = load_yaml(config_file)
        apply_overrides(cfg, from_file, where=str(config_file))
        user_keys |= dotted_keys(from_file)
    if overrides:
        apply_overrides(cfg, overrides, where="command line")
        user_keys |= dotted_keys(overrides)
    cfg.user_keys = frozenset(user_keys)
    cfg.validate()
    if not cfg.train.output:
        cfg.train.output = str(default_output(cfg))
    settle_model(cfg)
    return cfg


def dotted_keys(overrides: dict[str, Any], prefix: str = "") -> set[str]:
    """The leaf keys of a nested (YAML) or dotted override dict, dotted (``optim.base_lr``)."""
    keys = set()
    for key, value in overrides.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and dataclasses.is_dataclass(_section_type(full)):
            keys |= dotted_keys(value, f"{full}.")
        else:
            keys.add(full)
    return keys


def _section_type(key: str) -> Any:
    try:
        return field_type(key)
    except (KeyError, AttributeError, TypeError):
        return None


def default_output(cfg: Config) -> Path:
    """runs/<first video's name>-<preset>[-<objective>]: deterministic, so rerunning the same
    command resumes the same run instead of starting a new one."""
    stem = Path(cfg.data.videos[0]).resolve().name if cfg.data.videos else "run"
    name = f"{stem}-{cfg.preset or 'custom'}"
    if cfg.objective is not Objective.METHOD:
        name += f"-{cfg.objective.value.replace('+', '-')}"
    return Path("runs") / name


def saved_run_config(run_dir: Path) -> Config | None:
    """The config of the run in ``run_dir`` if it has a checkpoint to resume from."""
    from vidistill.runtime.names import CHECKPOINT_NAME

    path = Path(run_dir) / "config.yaml"
    if not (Path(run_dir) / CHECKPOINT_NAME).is_file() or not path.is_file():
        return None
    return config_from_dict(yaml.safe_load(path.read_text()) or {})


def settle_model(cfg: Config) -> None:
    """The last layer: the run's architecture, normalisation and crop sizes, settled before
    anything is built (the trainer, the checkpoint and ``--print-config`` read them from here).

    With an ``--init``, the architecture (timm name + ``model_args``) and the normalisation the
    weights were trained with come from it (:func:`apply_init`). Resuming a run that started from
    the same init, they come from the run's saved config: the init is not read at all (it may be
    gone; the weights come from the checkpoint). Crop sizes are fitted to the patch size
    (:func:`fit_crop_sizes`), a resumed run's too (it was snapped the same way when it started).
    """
    # Reading an init needs timm and the runtime's readers; the resolver imports no config.
    from vidistill.model.pretrained import InitError, resolve_init, vit_architecture

    saved = saved_run_config(Path(cfg.train.output))
    if cfg.model.init and saved is not None and saved.model.init == cfg.model.init:
        cfg.model.arch, cfg.model.model_args = saved.model.arch, dict(saved.model.model_args)
        cfg.data.mean, cfg.data.std = saved.data.mean, saved.data.std
    elif cfg.model.init:
        user_arch = cfg.model.arch if "model.arch" in cfg.user_keys else ""
        user_args = cfg.model.model_args if "model.model_args" in cfg.user_keys else {}
        init = resolve_init(cfg.model.init, user_arch, user_args)
        if init.kind != "safetensors" and user_arch not in ("", init.arch):
            raise InitError(
                f"--arch {cfg.model.arch} conflicts with the architecture of --init {cfg.model.init} "
                f"({init.arch}); the init decides it, drop --arch"
            )
        log.info("--init %s: %s", cfg.model.init, init.describe())
        apply_init(cfg, init.arch, init.model_args, init.patch_size, init.mean, init.std)
        return
    fit_crop_sizes(cfg, vit_architecture(f"--arch {cfg.model.arch}", cfg.model.arch, cfg.model.model_args)[0])


def apply_init(
    cfg: Config, arch: str, model_args: dict, patch: int, mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> None:
    """The last layer (defaults < preset < file < flags < ``--set`` < the init): what an ``--init``
    implies, read by the init's resolver. Its architecture, with the ``model_args`` the user set on
    top; the normalisation it was trained with, unless the user set one; crop sizes fitted to its
    patch (:func:`fit_crop_sizes`)."""
    user_args = cfg.model.model_args if "model.model_args" in cfg.user_keys else {}
    cfg.model.arch, cfg.model.model_args = arch, {**model_args, **user_args}
    if mean is not None and std is not None and not {"data.mean", "data.std"} & cfg.user_keys:
        cfg.data.mean, cfg.data.std = tuple(mean), tuple(std)
    fit_crop_sizes(cfg, patch)


def fit_crop_sizes(cfg: Config, patch: int) -> None:
    """Crop sizes to multiples of ``patch``: a size from the preset or the defaults snaps to the
    nearest one (a patch-14 model trains at 224/98 px, not 224/96); a size the user chose that the
    patch does not divide is an error."""
    asked, snapped = [], []
    for name in ("global_size", "local_size"):
        size = getattr(cfg.data, name)
        asked.append(size)
        if size % patch:
            lower, upper = size // patch * patch, (size // patch + 1) * patch
            if f"data.{name}" in cfg.user_keys:
                raise VidistillError(
                    f"data.{name} = {size} px is not a multiple of the patch size {patch} of {cfg.model.arch}"
                    + (f" (--init {cfg.model.init})" if cfg.model.init else "")
                    + f": use {' or '.join(str(s) for s in (lower, upper) if s)}"
                )
            size = max(patch, round(size / patch) * patch)
            setattr(cfg.data, name, size)
        snapped.append(size)
    if snapped != asked:
        log.info(
            "patch size %d: crop sizes snapped to %d/%d px (global/local; the preset asked %d/%d)",
            patch, *snapped, *asked,
        )


def config_from_dict(d: dict) -> Config:
    """Rebuild a Config saved with a run or checkpoint (unknown keys are an error)."""
    cfg = Config()
    apply_overrides(cfg, d, where="saved config")
    return cfg
