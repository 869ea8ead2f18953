"""Shared fixtures: REAL small videos and frame folders whose frame index is readable from pixels.

Every frame carries its index as an 8-bit bar code in the top third (white block = bit set), so a
test can check exact random access on a decoded (lossy) frame; the rest is a colourful pattern
that moves with the index, so crops and colour changes are visible.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

W, H = 128, 96
BITS = 8


def pattern_frame(index: int, width: int = W, height: int = H) -> np.ndarray:
    """RGB uint8 (height, width, 3): bar code of ``index`` on top, moving colour below."""
    frame = np.zeros((height, width, 3), np.uint8)
    band = height // 3
    block = width // BITS
    for b in range(BITS):
        if (index >> b) & 1:
            frame[:band, b * block : (b + 1) * block] = 255
    yy, xx = np.mgrid[band:height, 0:width]
    shift = 3 * index
    frame[band:, :, 0] = ((xx + shift) * 255 // width) % 256
    frame[band:, :, 1] = (yy * 255 // height) % 256
    frame[band:, :, 2] = 128 + 100 * ((((xx + shift) // 16) + (yy // 16)) % 2)
    return frame


def read_code(frame: np.ndarray) -> int:
    """The index a pattern frame carries (works at any size: coordinates are relative)."""
    height, width = frame.shape[:2]
    band = frame[int(height * 0.06) : int(height * 0.27)]
    value = 0
    for b in range(BITS):
        x0, x1 = int((b + 0.25) * width / BITS), int((b + 0.75) * width / BITS)
        if band[:, x0:x1].mean() > 128:
            value |= 1 << b
    return value


def write_video(path: Path, num_frames: int, size: tuple[int, int] = (W, H), fourcc: str = "mp4v",
                fps: float = 30.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened(), f"cannot write {path} with {fourcc}"
    for i in range(num_frames):
        writer.write(cv2.cvtColor(pattern_frame(i, *size), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_frames(folder: Path, num_frames: int, ext: str = ".png", size: tuple[int, int] = (W, H),
                 name: str = "frame{}") -> Path:
    """Frames named frame0, frame1, … frame10 (not zero-padded: natural sort must order them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(num_frames):
        cv2.imwrite(str(folder / (name.format(i) + ext)), cv2.cvtColor(pattern_frame(i, *size), cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture(scope="session")
def frame_code() -> Callable[[np.ndarray], int]:
    return read_code


@pytest.fixture(scope="session")
def make_video() -> Callable[..., Path]:
    """``make_video(path, num_frames, size=(128, 96), fourcc="mp4v", fps=30)`` -> path."""
    return write_video


@pytest.fixture(scope="session")
def make_frames() -> Callable[..., Path]:
    """``make_frames(folder, num_frames, ext=".png", size=(128, 96))`` -> folder."""
    return write_frames


@pytest.fixture(scope="session")
def video_file(tmp_path_factory) -> Path:
    """An 80-frame 128x96 mp4 (mp4v), 30 fps."""
    return write_video(tmp_path_factory.mktemp("video") / "moving.mp4", 80)


@pytest.fixture(scope="session")
def video_avi(tmp_path_factory) -> Path:
    """A 64-frame 128x96 MJPG avi (one JPEG per frame: easy to truncate or corrupt)."""
    return write_video(tmp_path_factory.mktemp("avi") / "moving.avi", 64, fourcc="MJPG")


@pytest.fixture(scope="session")
def frame_folder(tmp_path_factory) -> Path:
    """40 lossless PNG frames frame0.png … frame39.png."""
    return write_frames(tmp_path_factory.mktemp("frames") / "cam0", 40)


@pytest.fixture(scope="session")
def episode_tree(tmp_path_factory) -> Path:
    """A robot log: one source per episode, of different kinds and lengths.

    log/ep_00/cam.mp4 (48 frames), log/ep_01/cam.mp4 (64), log/ep_02/rgb/*.jpg (40 frames),
    log/ep_03/cam.mp4 (10: too short for K=3, Δ=8), plus a notes.txt to ignore.
    """
    root = tmp_path_factory.mktemp("log") / "log"
    for ep, n in (("ep_00", 48), ("ep_01", 64), ("ep_03", 10)):
        (root / ep).mkdir(parents=True)
        write_video(root / ep / "cam.mp4", n)
    write_frames(root / "ep_02" / "rgb", 40, ext=".jpg")
    (root / "notes.txt").write_text("not a video")
    return root


def write_av_video(path: Path, num_frames: int, codec: str = "libsvtav1", gop: int = 2,
                   size: tuple[int, int] = (W, H), fps: int = 30, faststart: bool = False,
                   first: int = 0) -> Path:
    """A video written by PyAV (FFmpeg's encoders): ``codec`` "libsvtav1" (AV1, what LeRobot writes,
    keyframe every ``gop`` frames like LeRobot's g=2), "libx264" (H.264 with B-frames), "mpeg4".
    Frame i carries the bar code ``first + i``. ``faststart``: the mp4 index (moov) goes first,
    so a cut-off file still opens."""
    import av

    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.gop_size = gop
        if codec == "libsvtav1":
            stream.options = {"preset": "12", "crf": "30"}  # LeRobot's crf; fastest preset (tests)
        elif codec == "libx264":
            stream.options = {"preset": "ultrafast", "bf": "2", "crf": "18"}
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(pattern_frame(first + i, *size), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="session")
def make_av_video() -> Callable[..., Path]:
    """``make_av_video(path, num_frames, codec="libsvtav1", gop=2, ...)`` -> path (see write_av_video)."""
    return write_av_video


# ------------------------------------------------------------------------------ LeRobot datasets
# Written the way huggingface/lerobot lays them out (src/lerobot/datasets/utils.py): meta/info.json,
# v2.x per-episode mp4s + meta/episodes.jsonl, v3.0 concatenated mp4s + meta/episodes/*.parquet,
# `dtype: image` features as PNG bytes (an HF Image struct) inside the data parquet files.
# Frame i of episode e carries the bar code lerobot_code(e, i), so a test can tell episodes apart.
LEROBOT_FPS = 30


def lerobot_code(episode: int, index: int) -> int:
    return 40 * episode + index  # episodes shorter than 40 frames, codes < 256


def _video_feature(depth: bool = False) -> dict:
    channels = 1 if depth else 3
    return {"dtype": "video", "shape": [H, W, channels], "names": ["height", "width", "channels"],
            "info": {"video.height": H, "video.width": W, "video.codec": "av1", "video.pix_fmt": "yuv420p",
                     "video.is_depth_map": depth, "video.fps": LEROBOT_FPS, "video.channels": channels,
                     "has_audio": False}}


def _info(version: str, episodes: list[int], cameras: list[str], image_camera: str | None) -> dict:
    features = {
        "action": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
        **{cam: _video_feature() for cam in cameras},
        "observation.images.depth": _video_feature(depth=True),
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }
    if image_camera:
        features[image_camera] = {"dtype": "image", "shape": [H, W, 3], "names": ["height", "width", "channels"]}
    v3 = version == "v3.0"
    return {
        "codebase_version": version, "robot_type": "test", "total_episodes": len(episodes),
        "total_frames": sum(episodes), "total_tasks": 1, "chunks_size": 1000, "fps": LEROBOT_FPS,
        "splits": {"train": f"0:{len(episodes)}"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet" if v3
        else "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4" if v3
        else "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": features,
    }


def _data_table(episodes: list[int], image_camera: str | None, only: int | None = None,
                state: list[np.ndarray] | None = None):
    import pyarrow as pa

    rows: dict[str, list] = {"action": [], "timestamp": [], "frame_index": [], "episode_index": [], "index": [],
                             "task_index": []}
    images = []
    index = 0
    for e, n in enumerate(episodes):
        for i in range(n):
            if only is None or only == e:
                rows["action"].append([0.0, 1.0])
                rows["timestamp"].append(i / LEROBOT_FPS)
                rows["frame_index"].append(i)
                rows["episode_index"].append(e)
                rows["index"].append(index)
                rows["task_index"].append(0)
                if image_camera:
                    png = cv2.imencode(".png", cv2.cvtColor(pattern_frame(lerobot_code(e, i)), cv2.COLOR_RGB2BGR))[1]
                    images.append({"bytes": png.tobytes(), "path": f"frame_{index:06d}.png"})
            index += 1
    if state is not None:  # observation.state, one array per episode
        rows["observation.state"] = [v.tolist() for e, a in enumerate(state) if only is None or only == e for v in a]
    table = pa.table({
        "action": pa.array(rows["action"], pa.list_(pa.float32())),
        **({"observation.state": pa.array(rows["observation.state"], pa.list_(pa.float32()))} if state else {}),
        "timestamp": pa.array(rows["timestamp"], pa.float32()),
        **{k: pa.array(rows[k], pa.int64()) for k in ("frame_index", "episode_index", "index", "task_index")},
    })
    if image_camera:
        table = table.append_column(image_camera, pa.array(
            images, pa.struct([("bytes", pa.binary()), ("path", pa.string())])))
    return table


def _encode(path: Path, codes: list[int], faststart: bool = False) -> None:
    """AV1 like LeRobot (libsvtav1, g=2, yuv420p); frame k shows bar code codes[k]."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options={"movflags": "+faststart"} if faststart else {}) as out:
        stream = out.add_stream("libsvtav1", rate=LEROBOT_FPS)
        stream.width, stream.height, stream.pix_fmt, stream.gop_size = W, H, "yuv420p", 2
        stream.options = {"preset": "12", "crf": "30"}
        for code in codes:
            for packet in stream.encode(av.VideoFrame.from_ndarray(pattern_frame(code), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def write_lerobot_v21(root: Path, episodes: list[int], cameras: list[str] = ("observation.images.top",),
                      image_camera: str | None = "observation.images.wrist") -> Path:
    import json

    import pyarrow.parquet as pq

    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(_info("v2.1", episodes, list(cameras), image_camera), indent=4))
    (root / "meta" / "episodes.jsonl").write_text("".join(
        json.dumps({"episode_index": e, "tasks": ["pick"], "length": n}) + "\n" for e, n in enumerate(episodes)))
    (root / "meta" / "tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": "pick"}) + "\n")
    for e, n in enumerate(episodes):
        data = root / f"data/chunk-000/episode_{e:06d}.parquet"
        data.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_data_table(episodes, image_camera, only=e), data)
        for cam in cameras:
            _encode(root / f"videos/chunk-000/{cam}/episode_{e:06d}.mp4", [lerobot_code(e, i) for i in range(n)])
    return root


def write_lerobot_v30(root: Path, episodes: list[int], cameras: list[str] = ("observation.images.top",),
                      image_camera: str | None = "observation.images.wrist", lead_in: int = 3,
                      split_after: int | None = None, faststart: bool = False,
                      state: list[np.ndarray] | None = None) -> Path:
    """v3.0: each camera's episodes concatenated in one mp4 (file-000). Camera k's file starts
    with k*lead_in frames of another recording, so every camera has its own offsets; with
    ``split_after`` the episodes after that one go to file-001 (a second concatenated file).
    ``faststart``: mp4 index first (a cut-off file still opens). ``state``: an
    ``observation.state`` column (one (frames, dims) array per episode)."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "meta").mkdir(parents=True)
    info = _info("v3.0", episodes, list(cameras), image_camera)
    if state is not None:
        info["features"]["observation.state"] = {"dtype": "float32", "shape": [state[0].shape[1]], "names": None}
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    rows: dict[str, list] = {"episode_index": [], "tasks": [], "length": [], "data/chunk_index": [],
                             "data/file_index": [], "dataset_from_index": [], "dataset_to_index": [],
                             "stats/action/mean": []}
    start = 0
    for e, n in enumerate(episodes):
        rows["episode_index"].append(e)
        rows["tasks"].append(["pick"])
        rows["length"].append(n)
        rows["data/chunk_index"].append(0)
        rows["data/file_index"].append(0)
        rows["dataset_from_index"].append(start)
        rows["dataset_to_index"].append(start + n)
        rows["stats/action/mean"].append([0.0, 1.0])
        start += n
    for k, cam in enumerate(cameras):
        files: dict[int, list[int]] = {0: [200 + j for j in range(k * lead_in)]}  # another recording first
        cols = {f"videos/{cam}/{c}": [] for c in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")}
        for e, n in enumerate(episodes):
            file = 1 if split_after is not None and e > split_after else 0
            codes = files.setdefault(file, [])
            # from_timestamp as LeRobot accumulates it (seconds), with float drift (lerobot #3177).
            cols[f"videos/{cam}/chunk_index"].append(0)
            cols[f"videos/{cam}/file_index"].append(file)
            cols[f"videos/{cam}/from_timestamp"].append(len(codes) / LEROBOT_FPS + 4e-4)
            cols[f"videos/{cam}/to_timestamp"].append((len(codes) + n) / LEROBOT_FPS)
            codes += [lerobot_code(e, i) for i in range(n)]
        rows.update(cols)
        for file, codes in files.items():
            _encode(root / f"videos/{cam}/chunk-000/file-{file:03d}.mp4", codes, faststart)
    meta = root / "meta/episodes/chunk-000/file-000.parquet"
    meta.parent.mkdir(parents=True)
    pq.write_table(pa.table(rows), meta)
    pq.write_table(pa.table({"task_index": [0], "task": ["pick"]}), root / "meta/tasks.parquet")
    data = root / "data/chunk-000/file-000.parquet"
    data.parent.mkdir(parents=True)
    pq.write_table(_data_table(episodes, image_camera, state=state), data, row_group_size=8)
    return root


@pytest.fixture(scope="session")
def lerobot_v21(tmp_path_factory) -> Path:
    """LeRobot v2.1: episodes of 9 and 12 frames; video camera observation.images.top (AV1 g=2),
    image camera observation.images.wrist (PNG in parquet), a depth video feature (skipped)."""
    return write_lerobot_v21(tmp_path_factory.mktemp("lerobot") / "v21", [9, 12])


@pytest.fixture(scope="session")
def lerobot_v30(tmp_path_factory) -> Path:
    """LeRobot v3.0: episodes of 9, 12 and 7 frames; cameras top and side, each one concatenated
    mp4 with its own offsets (side starts 3 frames later); episode 2 of each in file-001; the
    image camera observation.images.wrist; a depth video feature (skipped)."""
    return write_lerobot_v30(tmp_path_factory.mktemp("lerobot") / "v30", [9, 12, 7],
                             cameras=["observation.images.top", "observation.images.side"], split_after=1)
