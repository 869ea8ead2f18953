"""Which encoder is better for *this* robot: a linear readout of the actions (or state) a robot
log records beside its frames, from frozen features, on episodes the readout never saw.

Protocol (``vidistill eval actions``; :func:`action_probe` from Python):

* Episodes: the log's episodes of one camera (``camera``; default the log's first). Whole
  episodes are held out (a seeded permutation; ``holdout`` of them, at least one), never frames
  of a training episode: neighbouring frames of one episode are near copies, and a split inside
  episodes would score memory, not features. The split is written into the report.
* Features: every ``stride``-th frame of each episode, encoded frozen through the runtime with
  the contract's own preprocessing; per frame [CLS] and the mean of the patch tokens,
  concatenated (2 D). ``history`` > 1 concatenates the features of the previous frames too
  (repeating the first frame at an episode's start). Features are cached on disk per encoder
  and log (:data:`CACHE_VERSION`; keyed by the artefact files' size and mtime and the log's), so
  comparing another encoder on the same log encodes only that one.
* Readout: ridge regression on features standardised with the training episodes' statistics,
  to the target standardised per dimension. The penalty is chosen on the training episodes only:
  grouped cross-validation with whole episodes as folds (leave-one-episode-out up to
  :data:`MAX_FOLDS` training episodes, else that many folds of episodes; a single training
  episode: contiguous blocks of it).
* Scores on the held-out episodes, per target dimension and their mean over dimensions: R²
  (1 - SSE / SST around the held-out mean; sklearn's ``r2_score``), normalised MSE (MSE divided
  by the target's variance over the training episodes), and the k-NN action error (DynaMo's
  diagnostic): the normalised MSE of the mean target of the ``knn`` nearest training frames in
  standardised feature space. A dimension constant over the training or held-out episodes
  (e.g. a gripper that never moves) has no R²: ``None``, left out of the means.
* Every report has a ``random init`` row first: the first encoder's architecture with random
  weights (seeded), the floor any trained encoder should clear.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidistill.data.sources import OpenOptions, VideoSource, discover
from vidistill.errors import VidistillError
from vidistill.runtime.encoder import Encoder

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when what a cached feature file holds changes
MAX_FOLDS = 5
RANDOM_INIT = "random init"
# Ridge penalties tried, per training frame of standardised features (the fit's scale does not
# depend on how many frames there are).
PENALTIES = tuple(float(x) for x in np.logspace(-4, 3, 15))


@dataclass
class ActionProbeSettings:
    targets: tuple[str, ...] = ()  # the log's names; () = the log's action
    camera: str | None = None  # the log's camera name; None = its first
    history: int = 1  # frames of features per sample (the current one and history-1 before it)
    holdout: float = 0.2  # fraction of episodes held out (at least 1)
    seed: int = 0  # the split and the random-init weights
    stride: int = 1  # every stride-th frame of each episode
    knn: int = 5  # neighbours of the k-NN action error
    batch_size: int = 32  # images per forward pass
    fps: float = 0.0  # frame rate for logs that store none (HDF5; informational)
    cache: str | None = None  # feature cache folder; None = $VIDISTILL_CACHE/action_features; "" = off


# ===================================================================================== the log
@dataclass
class ActionLog:
    """One camera's episodes of a log and their targets, checked against each other."""

    data: str
    camera: str
    episodes: list[VideoSource]
    targets: dict[str, list[np.ndarray]]  # name -> per episode (frames used, dims)
    frames: list[np.ndarray] = field(default_factory=list)  # per episode: the frame indices used


def _target_list(src: VideoSource) -> str:
    names = src.targets.names() if src.targets else []
    return ", ".join(names) if names else "none"


def open_action_log(data: str | Path, settings: ActionProbeSettings) -> ActionLog:
    """The episodes of ``data`` (any log discovery reads) with their targets; ``VidistillError``
    naming the file for a log without the target, a target whose length does not match the
    frames, or fewer than 2 episodes."""
    cameras = (settings.camera,) if settings.camera else ()
    found = discover([data], OpenOptions(cameras=cameras, fps=settings.fps))
    camera = settings.camera or found.sources[0].camera
    episodes = [s for s in found.sources if s.camera == camera]
    others = sorted({s.camera for s in found.sources} - {camera})
    if others:
        log.info("%s: using camera %s (others: %s; choose with --camera)", data, camera or "(unnamed)",
                 ", ".join(others))
    first = episodes[0]
    if first.targets is None:
        raise VidistillError(
            f"{data}: records no actions or state beside its frames (a {first.kind} source: {first.path}); "
            "give a robot log that does: a LeRobot dataset (action, observation.state), a robomimic or "
            "ALOHA HDF5 file (actions / action, obs/..., observations/qpos)"
        )
    names = list(settings.targets)
    if not names:
        action = first.targets.action_name()
        if action is None:
            raise VidistillError(f"{first.targets.file}: records no action (looked for 'action', 'actions'); "
                                 f"targets it has: {_target_list(first)}; choose one with --target NAME")
        names = [action]
    if len(episodes) < 2:
        raise VidistillError(
            f"{data}: {len(episodes)} episode of camera {camera or '(unnamed)'}; holding out whole episodes "
            "needs at least 2 (give a log with more episodes, or a folder of episode files)"
        )
    stride = max(1, int(settings.stride))
    targets: dict[str, list[np.ndarray]] = {n: [] for n in names}
    frames: list[np.ndarray] = []
    for src in episodes:
        used = np.arange(0, len(src), stride)
        if src.targets is None:
            raise VidistillError(f"{src.path}: episode {src.episode} records no targets beside its frames")
        for name in names:
            if name not in src.targets.names():
                raise VidistillError(f"{src.targets.file}: no target {name!r} (episode {src.episode or src.name}); "
                                     f"targets it has: {_target_list(src)}")
            values = src.targets.read(name)
            if len(values) != len(src):
                raise VidistillError(
                    f"{src.targets.file}: episode {src.episode or src.name}: target {name!r} has {len(values)} rows "
                    f"but camera {camera or '(unnamed)'} has {len(src)} frames ({src.path}); they must match one "
                    "to one"
                )
            if not np.isfinite(values).all():
                raise VidistillError(f"{src.targets.file}: episode {src.episode or src.name}: target {name!r} "
                                     "holds NaN or infinite values")
            targets[name].append(values[used])
        frames.append(used)
    for name, per_episode in targets.items():
        dims = {v.shape[1] for v in per_episode}
        if len(dims) > 1:
            raise VidistillError(f"{data}: target {name!r} has different sizes across episodes ({sorted(dims)})")
    return ActionLog(str(data), camera, episodes, targets, frames)


def split_episodes(n: int, holdout: float, seed: int) -> tuple[list[int], list[int]]:
    """(training, held-out) episode positions: a seeded permutation, ``holdout`` of them held
    out (at least 1, at most n - 1)."""
    if n < 2:
        raise VidistillError(f"{n} episode(s): holding out whole episodes needs at least 2")
    order = np.random.default_rng(seed).permutation(n)
    n_test = min(n - 1, max(1, round(holdout * n)))
    return sorted(order[n_test:].tolist()), sorted(order[:n_test].tolist())


# ================================================================================ the features
def _file_stamp(path: str | Path) -> list[Any]:
    p = Path(path)
    if p.is_dir():
        return [[f.name, *_file_stamp(f)] for f in sorted(p.iterdir()) if f.is_file()]
    st = p.stat()
    return [str(p.resolve()), st.st_size, st.st_mtime_ns]


def encoder_key(encoder: Encoder, spec: str) -> str:
    """What identifies an encoder's features: its artefact files (path, size, mtime), backend and
    contract; for the random init, its contract and seed (``spec``)."""
    from vidistill.runtime.artefacts import find_artefacts

    stamp: list[Any] = [spec, encoder.backend, encoder.contract.to_dict()]
    if not spec.startswith(RANDOM_INIT) and Path(encoder.source).exists():
        found = find_artefacts(encoder.source)
        stamp += [_file_stamp(p) for p in (found.onnx, found.engine, found.safetensors, found.checkpoint) if p]
    return hashlib.sha256(json.dumps(stamp, default=str).encode()).hexdigest()[:24]


def source_key(src: VideoSource, frames: np.ndarray) -> str:
    stamp = [CACHE_VERSION, _file_stamp(src.path), src.kind, src.camera, src.episode, src.name, len(src),
             list(src.size), frames.tolist()]
    return hashlib.sha256(json.dumps(stamp, default=str).encode()).hexdigest()[:24]


def _cache_root(settings: ActionProbeSettings) -> Path | None:
    if settings.cache == "":
        return None
    if settings.cache:
        return Path(settings.cache).expanduser()
    from vidistill.runtime.ort import cache_dir

    return cache_dir() / "action_features"


def _save(path: Path, array: np.ndarray) -> None:
    """Written whole or not at all (a killed run leaves no half file to be read later)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def frame_features(encoder: Encoder, features: Any) -> np.ndarray:
    """[CLS] and the mean patch token, concatenated: (N, 2 D) float32."""
    return np.concatenate([np.asarray(features.cls), np.asarray(features.pooled())], axis=1).astype(np.float32)


def encode_episodes(encoder: Encoder, action_log: ActionLog, label: str, key: str,
                    settings: ActionProbeSettings) -> list[np.ndarray]:
    """Per episode (frames used, 2 D) features, from the cache where present."""
    from tqdm import tqdm

    root = _cache_root(settings)
    out: list[np.ndarray | None] = []
    todo: list[int] = []
    paths: list[Path | None] = []
    for k, (src, frames) in enumerate(zip(action_log.episodes, action_log.frames, strict=True)):
        path = root / key / f"{source_key(src, frames)}.npy" if root is not None else None
        paths.append(path)
        cached = None
        if path is not None and path.is_file():
            try:
                cached = np.load(path)
            except (OSError, ValueError):
                cached = None
            if cached is not None and cached.shape[0] != len(frames):
                cached = None
        out.append(cached)
        if cached is None:
            todo.append(k)
    if not todo:
        log.info("%s: features of all %d episodes from the cache", label, len(out))
        return [x for x in out if x is not None]
    total = sum(len(action_log.frames[k]) for k in todo)
    with tqdm(total=total, desc=f"encoding ({label})", unit="frame", disable=None) as bar:
        for k in todo:
            src, frames = action_log.episodes[k], action_log.frames[k]
            parts = []
            for start in range(0, len(frames), settings.batch_size):
                batch = src.read_many(frames[start : start + settings.batch_size].tolist())
                parts.append(frame_features(encoder, encoder.encode(batch)))
                bar.update(len(batch))
            src.close()
            feats = np.concatenate(parts)
            if paths[k] is not None:
                _save(paths[k], feats)
            out[k] = feats
    return [x for x in out if x is not None]


def with_history(features: np.ndarray, history: int) -> np.ndarray:
    """(T, F) -> (T, history * F): each row with the rows before it (the first row repeated)."""
    if history <= 1:
        return features
    idx = np.arange(len(features))[:, None] - np.arange(history)[None, :]
    return features[np.clip(idx, 0, None)].reshape(len(features), -1)


# ================================================================================== the readout
@dataclass
class Ridge:
    """A ridge readout on standardised features to standardised targets."""

    x_mean: np.ndarray
    x_scale: np.ndarray
    y_mean: np.ndarray
    y_scale: np.ndarray
    weights: np.ndarray  # (F, dims)
    penalty: float  # per training frame
    cv_mse: list[float]  # mean standardised CV error per penalty tried

    def predict(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.x_mean) / self.x_scale) @ self.weights * self.y_scale + self.y_mean


def _standardiser(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = a.mean(0)
    scale = a.std(0)
    return mean, np.where(scale > 1e-8 * max(1.0, float(np.abs(mean).max(initial=0.0))), scale, 1.0)


def _ridge_solutions(x: np.ndarray, y: np.ndarray, penalties: Sequence[float]) -> list[np.ndarray]:
    """Ridge weights for each penalty (times the number of rows), from one eigendecomposition
    of the Gram matrix (or of the kernel matrix when there are fewer rows than features)."""
    n, f = x.shape
    if n >= f:
        s, v = np.linalg.eigh(x.T @ x)
        proj = v.T @ (x.T @ y)
        return [v @ (proj / (np.clip(s, 0, None) + lam * n)[:, None]) for lam in penalties]
    s, u = np.linalg.eigh(x @ x.T)
    proj = u.T @ y
    return [x.T @ (u @ (proj / (np.clip(s, 0, None) + lam * n)[:, None])) for lam in penalties]


def _folds(groups: np.ndarray, seed: int) -> list[np.ndarray]:
    """Validation masks: whole episodes (at most MAX_FOLDS folds); one episode: contiguous blocks."""
    episodes = np.unique(groups)
    if len(episodes) == 1:
        blocks = np.array_split(np.arange(len(groups)), MAX_FOLDS)
        masks = []
        for b in blocks:
            m = np.zeros(len(groups), bool)
            m[b] = True
            masks.append(m)
        return masks
    order = np.random.default_rng(seed).permutation(episodes)
    fold_of = {int(e): i % MAX_FOLDS for i, e in enumerate(order)}
    fold = np.array([fold_of[int(g)] for g in groups])
    return [fold == k for k in range(min(MAX_FOLDS, len(episodes)))]


def fit_ridge(x: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int = 0,
              penalties: Sequence[float] = PENALTIES) -> Ridge:
    """Ridge with the penalty chosen by grouped cross-validation on (x, y) alone."""
    x = x.astype(np.float64)
    errors = np.zeros(len(penalties))
    for val in _folds(groups, seed):
        xm, xs = _standardiser(x[~val])
        ym, ys = _standardiser(y[~val])
        xt, yt = (x[~val] - xm) / xs, (y[~val] - ym) / ys
        xv, yv = (x[val] - xm) / xs, (y[val] - ym) / ys
        for i, w in enumerate(_ridge_solutions(xt, yt, penalties)):
            errors[i] += float(((xv @ w - yv) ** 2).sum())
    errors /= len(x) * y.shape[1]
    best = int(np.argmin(errors))
    xm, xs = _standardiser(x)
    ym, ys = _standardiser(y)
    w = _ridge_solutions((x - xm) / xs, (y - ym) / ys, [penalties[best]])[0]
    return Ridge(xm, xs, ym, ys, w, float(penalties[best]), errors.tolist())


def knn_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, k: int, chunk: int = 512) -> np.ndarray:
    """Mean target of the k nearest training rows (Euclidean, features standardised on train)."""
    mean, scale = _standardiser(x_train)
    a, b = (x_train - mean) / scale, (x_test - mean) / scale
    a_sq = (a**2).sum(1)
    k = min(k, len(a))
    out = []
    for start in range(0, len(b), chunk):
        q = b[start : start + chunk]
        dist = a_sq[None, :] - 2 * q @ a.T  # + |q|^2, the same for every candidate
        nearest = np.argpartition(dist, k - 1, axis=1)[:, :k]
        out.append(y_train[nearest].mean(1))
    return np.concatenate(out)


def scores(y_true: np.ndarray, y_pred: np.ndarray, y_knn: np.ndarray, y_train: np.ndarray) -> dict[str, Any]:
    """R², normalised MSE and k-NN error per dimension and their means (see the module docstring)."""
    train_var = y_train.var(0)
    test_var = y_true.var(0)
    tol = 1e-12 * np.maximum(1.0, np.abs(y_train).max(0) ** 2)
    scored = (train_var > tol) & (test_var > tol)
    mse = ((y_pred - y_true) ** 2).mean(0)
    knn_mse = ((y_knn - y_true) ** 2).mean(0)
    r2 = 1 - mse / np.where(scored, test_var, 1)
    nmse = mse / np.where(scored, train_var, 1)
    knn = knn_mse / np.where(scored, train_var, 1)
    per_dim = lambda a: [float(v) if ok else None for v, ok in zip(a, scored, strict=True)]  # noqa: E731
    mean = lambda a: float(a[scored].mean()) if scored.any() else None  # noqa: E731
    return {
        "r2": mean(r2), "r2_per_dim": per_dim(r2),
        "nmse": mean(nmse), "nmse_per_dim": per_dim(nmse),
        "knn_error": mean(knn), "knn_error_per_dim": per_dim(knn),
        "dims": int(y_true.shape[1]), "dims_scored": int(scored.sum()),
    }


def evaluate_features(features: list[np.ndarray], targets: list[np.ndarray], train: list[int], test: list[int],
                      settings: ActionProbeSettings) -> dict[str, Any]:
    """Fit on the training episodes, score on the held-out ones (per-episode arrays)."""
    xs = [with_history(f, settings.history) for f in features]
    x_train = np.concatenate([xs[k] for k in train]).astype(np.float64)
    y_train = np.concatenate([targets[k] for k in train])
    groups = np.concatenate([np.full(len(xs[k]), k) for k in train])
    x_test = np.concatenate([xs[k] for k in test]).astype(np.float64)
    y_test = np.concatenate([targets[k] for k in test])
    readout = fit_ridge(x_train, y_train, groups, settings.seed)
    report = scores(y_test, readout.predict(x_test), knn_predict(x_train, y_train, x_test, settings.knn), y_train)
    report["ridge_penalty"] = readout.penalty
    return report


# ============================================================================== the comparison
def random_init_encoder(like: Encoder, seed: int) -> Encoder:
    """``like``'s architecture and contract, random weights (timm's init, seeded), torch backend."""
    import torch

    from vidistill.runtime.backends.torch import TorchEncoder
    from vidistill.runtime.torch_model import TokenEncoder, build_timm_encoder

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = TokenEncoder(build_timm_encoder(like.contract))
    return TorchEncoder(model, like.contract, like.device if str(like.device).startswith("cuda") else "cpu",
                        source=f"{RANDOM_INIT} ({like.contract.model_name})", precision="fp32")


def _load(spec: str | Path | Encoder, backend: str, device: str | None) -> Encoder:
    if isinstance(spec, Encoder):
        return spec
    from vidistill.runtime import load_encoder

    try:
        return load_encoder(spec, backend=backend, device=device, precision="fp32")
    except VidistillError as e:
        raise VidistillError(f"encoder {spec}: cannot be loaded: {e}") from None


def action_probe(
    encoders: Sequence[str | Path | Encoder], data: str | Path, settings: ActionProbeSettings | None = None,
    backend: str = "torch", device: str | None = "cpu", labels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Compare encoders by how well a linear readout of their frozen features predicts the log's
    targets on held-out episodes. Returns the JSON-ready report: ``rows`` (random init first,
    then one per encoder, each with ``targets[name]`` = :func:`scores` + ``ridge_penalty``) and
    ``split``. Encoders are loaded (all of them, before any encoding) from anything
    :func:`~vidistill.runtime.load_encoder` takes, or given loaded."""
    settings = settings or ActionProbeSettings()
    if not encoders:
        raise VidistillError("no encoder given")
    if settings.history < 1 or settings.stride < 1 or settings.knn < 1 or settings.batch_size < 1:
        raise VidistillError("history, stride, knn and batch size must be positive")
    if not 0 < settings.holdout < 1:
        raise VidistillError(f"holdout must be a fraction between 0 and 1, got {settings.holdout}")
    t0 = time.perf_counter()
    action_log = open_action_log(data, settings)  # the log first: a wrong log should not wait for models
    train, test = split_episodes(len(action_log.episodes), settings.holdout, settings.seed)
    loaded = [_load(e, backend, device) for e in encoders]
    names = list(labels) if labels else [str(e.source if isinstance(e, Encoder) else e) for e in encoders]
    # (label, encoder, what identifies its features, whether this call loaded it and closes it)
    rows_in = [(RANDOM_INIT, random_init_encoder(loaded[0], settings.seed), f"{RANDOM_INIT} seed {settings.seed}", True)]
    rows_in += [(name, enc, str(enc.source), not isinstance(spec, Encoder))
                for name, enc, spec in zip(names, loaded, encoders, strict=True)]
    rows = []
    for name, encoder, spec, owned in rows_in:
        t = time.perf_counter()
        features = encode_episodes(encoder, action_log, name, encoder_key(encoder, spec), settings)
        t_encode = time.perf_counter() - t
        per_target = {target: evaluate_features(features, values, train, test, settings)
                      for target, values in action_log.targets.items()}
        rows.append({
            "encoder": name, "source": str(encoder.source), "backend": encoder.backend,
            "model": encoder.contract.model_name, "image_size": list(encoder.image_size),
            "feature_dim": int(features[0].shape[1]) * settings.history, "encode_s": round(t_encode, 2),
            "targets": per_target,
        })
        if owned:
            encoder.close()
    episode_names = [s.episode or s.name for s in action_log.episodes]
    return {
        "task": "actions",
        "data": action_log.data,
        "camera": action_log.camera,
        "targets": {n: int(v[0].shape[1]) for n, v in action_log.targets.items()},
        "features": "[CLS] + mean patch token" + (f", {settings.history} frames" if settings.history > 1 else ""),
        "split": {
            "seed": settings.seed, "holdout": settings.holdout, "unit": "episode",
            "train": [episode_names[k] for k in train], "test": [episode_names[k] for k in test],
            "train_frames": int(sum(len(action_log.frames[k]) for k in train)),
            "test_frames": int(sum(len(action_log.frames[k]) for k in test)),
        },
        "settings": asdict(settings) | {"targets": list(action_log.targets)},
        "rows": rows,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_table(report: dict[str, Any]) -> str:
    """One row per encoder: R², normalised MSE and k-NN error of each target."""
    targets = list(report["targets"])
    split = report["split"]
    head = (f"{report['data']}  camera {report['camera'] or '(unnamed)'}  ·  {len(split['train'])} training / "
            f"{len(split['test'])} held-out episodes ({split['train_frames']} / {split['test_frames']} frames, "
            f"seed {split['seed']})  ·  features: {report['features']}")
    columns = [f"{t} {m}" for t in targets for m in ("R²", "NMSE", "kNN err")]
    width = max(len(r["encoder"]) for r in report["rows"]) + 2
    lines = [head, "", f"{'encoder':<{width}}" + "".join(f"{c:>{max(10, len(c) + 2)}}" for c in columns)]
    for row in report["rows"]:
        cells = []
        for t in targets:
            s = row["targets"][t]
            cells += [_cell(s["r2"]), _cell(s["nmse"]), _cell(s["knn_error"])]
        lines.append(f"{row['encoder']:<{width}}" + "".join(
            f"{c:>{max(10, len(col) + 2)}}" for c, col in zip(cells, columns, strict=True)))
    dims = ", ".join(f"{t}: {report['targets'][t]} dims" for t in targets)
    lines += ["", f"({dims}; R²: higher is better, 1 = perfect, 0 = the held-out mean; NMSE and kNN err: "
                  "lower is better, normalised by the target's training variance)"]
    return "\n".join(lines)


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    """The JSON report, written whole or not at all."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out)
    return out
