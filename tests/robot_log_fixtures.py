"""Robot logs written by the real writers: ROS 1 / ROS 2 bags (rosbags) and HDF5 episodes (h5py).

Every frame is a bar-code pattern (conftest.pattern_frame) carrying ``code(stream, index)``, where
a stream is one episode x camera of a fixture: a test reads the code back from the decoded pixels
and so checks exact random access, also across episode and camera boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from conftest import pattern_frame

W, H = 64, 48  # small frames: bags and HDF5 files of a few MB at most
FRAME_NS = 33_333_333  # 30 fps
START_NS = 1_700_000_000 * 10**9


def code(stream: int, index: int) -> int:
    """The 8-bit bar code of frame ``index`` of fixture stream ``stream`` (< 8 streams, < 32 frames)."""
    assert 0 <= stream < 8 and 0 <= index < 32
    return 32 * stream + index


def frame(stream: int, index: int, width: int = W, height: int = H) -> np.ndarray:
    """RGB uint8 (H, W, 3) carrying ``code(stream, index)``."""
    return pattern_frame(code(stream, index), width, height)


def colour_error(decoded: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """Mean absolute error of a decoded RGB frame against the one written, and the same with red
    and blue swapped: the bar code is grey, so only the colours below it tell the channel order
    (the pattern's red ramp and blue checker differ by ~70 levels on average)."""
    band = expected.shape[0] // 3 + 2  # below the bar code, clear of its edge
    a, b = decoded[band:].astype(np.float32), expected[band:].astype(np.float32)
    return float(np.abs(a - b).mean()), float(np.abs(a[..., ::-1] - b).mean())


def assert_colours(decoded: np.ndarray, expected: np.ndarray, what: str = "") -> None:
    error, swapped = colour_error(decoded, expected)
    assert error < 12 < swapped, f"{what}: colours off by {error:.1f} (red/blue swapped: {swapped:.1f})"


# ========================================================================================= ROS
@dataclass
class Topic:
    """One topic of a fixture bag.

    encoding: a sensor_msgs/Image encoding (rgb8, bgr8, mono8, rgba8, bgra8, bayer_rggb8, 16UC1,
    or anything else to test rejection), or "jpeg" / "png" / "compressedDepth" for CompressedImage,
    or "imu" for a non-image topic.
    """

    name: str
    encoding: str
    frames: int
    stream: int = 0
    row_padding: int = 0  # bytes of padding at the end of each row (Image.step > width * channels)
    frame_ns: int = FRAME_NS  # 0: every message of the topic has the same timestamp
    size: tuple[int, int] = (W, H)


def _channels(encoding: str) -> int:
    return {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "16UC1": 2}.get(encoding, 1)


def _pixels(encoding: str, rgb: np.ndarray) -> np.ndarray:
    """The frame as the Image encoding stores it: (H, W, C) uint8 bytes."""
    if encoding == "rgb8":
        return rgb
    if encoding == "bgr8":
        return rgb[..., ::-1]
    if encoding == "rgba8":
        return np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])
    if encoding == "bgra8":
        return np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 200, np.uint8)])
    if encoding == "mono8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None]
    if encoding == "bayer_rggb8":
        mosaic = np.empty(rgb.shape[:2], np.uint8)
        mosaic[0::2, 0::2] = rgb[0::2, 0::2, 0]
        mosaic[0::2, 1::2] = rgb[0::2, 1::2, 1]
        mosaic[1::2, 0::2] = rgb[1::2, 0::2, 1]
        mosaic[1::2, 1::2] = rgb[1::2, 1::2, 2]
        return mosaic[..., None]
    if encoding == "16UC1":  # a depth map: millimetres
        depth = (rgb[..., 0].astype(np.uint16) * 10).astype("<u2")
        return depth.view(np.uint8).reshape(rgb.shape[0], rgb.shape[1], 2)
    # Any other encoding (e.g. yuv422): 2 bytes per pixel of something; the reader must refuse it.
    return np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None], 2, axis=2)


def _message(ts, topic: Topic, index: int, stamp_ns: int, ros1: bool):
    types = ts.types
    sec, nsec = divmod(stamp_ns, 10**9)
    stamp = types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec)
    header_type = types["std_msgs/msg/Header"]
    header = header_type(seq=index, stamp=stamp, frame_id="cam") if ros1 else header_type(stamp=stamp, frame_id="cam")
    rgb = frame(topic.stream, index, *topic.size)
    if topic.encoding == "imu":
        msg_type = "sensor_msgs/msg/Temperature"
        return msg_type, types[msg_type](header=header, temperature=20.0 + index, variance=0.0)
    if topic.encoding in ("jpeg", "png", "compressedDepth"):
        ext = ".png" if topic.encoding != "jpeg" else ".jpg"
        image = rgb[..., ::-1] if topic.encoding != "compressedDepth" else rgb[..., 0].astype(np.uint16) * 10
        ok, data = cv2.imencode(ext, image, [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == ".jpg" else [])
        assert ok
        fmt = {"jpeg": "bgr8; jpeg compressed bgr8", "png": "png",
               "compressedDepth": "16UC1; compressedDepth png"}[topic.encoding]
        msg_type = "sensor_msgs/msg/CompressedImage"
        return msg_type, types[msg_type](header=header, format=fmt, data=data.ravel())
    pixels = _pixels(topic.encoding, rgb)
    h, w, c = pixels.shape
    rows = np.zeros((h, w * c + topic.row_padding), np.uint8)
    rows[:, : w * c] = pixels.reshape(h, w * c)
    msg_type = "sensor_msgs/msg/Image"
    return msg_type, types[msg_type](
        header=header, height=h, width=w, encoding=topic.encoding, is_bigendian=0, step=w * c + topic.row_padding,
        data=rows.ravel(),
    )


def _messages(topics: Sequence[Topic]) -> list[tuple[int, Topic, int]]:
    """(timestamp, topic, index) of every message, in time order (topics interleaved)."""
    out = []
    for k, topic in enumerate(topics):
        for i in range(topic.frames):
            out.append((START_NS + i * topic.frame_ns + k * 1000, topic, i))
    return sorted(out, key=lambda m: m[0])


def write_ros1_bag(path: Path, topics: Sequence[Topic], compression: str = "") -> Path:
    """A ROS 1 .bag (rosbags' ROS 1 writer, optionally lz4/bz2 chunks)."""
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS1_NOETIC)
    writer = Writer(path)
    if compression:
        writer.set_compression(getattr(Writer.CompressionFormat, compression.upper()))
    with writer:
        connections = {}
        for stamp, topic, i in _messages(topics):
            msg_type, msg = _message(ts, topic, i, stamp, ros1=True)
            if topic.name not in connections:
                connections[topic.name] = writer.add_connection(topic.name, msg_type, typestore=ts)
            writer.write(connections[topic.name], stamp, ts.serialize_ros1(msg, msg_type))
    return path


def write_ros2_bag(path: Path, topics: Sequence[Topic], storage: str = "sqlite3", compressed: bool = False) -> Path:
    """A rosbag2 folder (metadata.yaml + one .db3 or .mcap file) by rosbags' ROS 2 writer;
    ``compressed``: zstd storage compression (mcap: each 1 MiB chunk compressed)."""
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[storage]
    writer = Writer(path, version=9, storage_plugin=plugin)
    if compressed:
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    with writer:
        connections = {}
        for stamp, topic, i in _messages(topics):
            msg_type, msg = _message(ts, topic, i, stamp, ros1=False)
            if topic.name not in connections:
                connections[topic.name] = writer.add_connection(topic.name, msg_type, typestore=ts)
            writer.write(connections[topic.name], stamp, ts.serialize_cdr(msg, msg_type))
    return path


# ======================================================================================== HDF5
def write_robomimic(path: Path, lengths: Sequence[int], cameras: Sequence[str] = ("agentview_image",),
                    demo_ids: Sequence[int] | None = None, images: Sequence[np.ndarray] | None = None,
                    actions: Sequence[np.ndarray] | None = None,
                    low_dim: dict[str, Sequence[np.ndarray]] | None = None) -> Path:
    """A robomimic dataset: data/demo_N/obs/<camera> (N,H,W,3) uint8, gzip, plus low-dim obs.

    ``demo_ids`` default 0..n-1; written in the order given (tests pass 10 before 2: the reader
    must sort them numerically). Stream of (demo k in sorted order, camera c) = k * len(cameras) + c.
    ``images`` / ``actions`` (one array per demo, in the order given): the frames of every camera
    and the ``actions`` dataset instead of bar codes and zeros (an action may have another length
    than its frames: a damaged file); ``low_dim``: more obs/<key> datasets, one array per demo.
    """
    import json

    import h5py

    ids = list(demo_ids) if demo_ids is not None else list(range(len(lengths)))
    order = sorted(range(len(ids)), key=lambda k: ids[k])
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["total"] = int(sum(lengths))
        data.attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1, "env_kwargs": {}})
        for k, (demo_id, n) in enumerate(zip(ids, lengths, strict=True)):
            demo = data.create_group(f"demo_{demo_id}")
            demo.attrs["num_samples"] = n
            demo.create_dataset("actions", data=actions[k] if actions is not None else np.zeros((n, 7), np.float32))
            obs = demo.create_group("obs")
            obs.create_dataset("robot0_eef_pos", data=np.zeros((n, 3), np.float32))
            for key, values in (low_dim or {}).items():
                obs.create_dataset(key, data=values[k])
            rank = order.index(k)
            for c, cam in enumerate(cameras):
                stream = rank * len(cameras) + c
                pixels = images[k] if images is not None else np.stack([frame(stream, i) for i in range(n)])
                obs.create_dataset(cam, data=pixels, compression="gzip")  # h5py chunks, as robomimic
            obs.create_dataset("agentview_depth", data=np.ones((n, H, W, 1), np.float32))
        mask = f.create_group("mask")
        mask.create_dataset("train", data=np.array([f"demo_{i}".encode() for i in ids]))
    return path


ALOHA_CAMERAS = ("cam_high", "cam_low", "cam_left_wrist", "cam_right_wrist")


def write_aloha(path: Path, frames: int, cameras: Sequence[str] = ALOHA_CAMERAS[:2], compressed: bool = False) -> Path:
    """One ALOHA / ACT episode: /observations/images/<cam> raw (T,H,W,3) chunked per frame, or JPEG
    bytes zero-padded to (T, padded) with /compress_len (n_cams, T) as float, root attrs sim/compress.
    Stream of camera c = c (in ``cameras`` order, the recorder's camera_names order)."""
    import h5py

    with h5py.File(path, "w", rdcc_nbytes=1024**2 * 2) as f:
        f.attrs["sim"] = False
        f.attrs["compress"] = compressed
        obs = f.create_group("observations")
        images = obs.create_group("images")
        obs.create_dataset("qpos", data=np.zeros((frames, 14)))
        f.create_dataset("action", data=np.zeros((frames, 14)))
        encoded = {}
        for c, cam in enumerate(cameras):
            rgb = [frame(c, i) for i in range(frames)]
            if not compressed:
                images.create_dataset(cam, data=np.stack(rgb), chunks=(1, H, W, 3))
                continue
            # As the recorders do: the camera's RGB array straight into cv2.imencode (which takes it for BGR).
            encoded[cam] = [cv2.imencode(".jpg", x, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].ravel() for x in rgb]
        if compressed:
            padded = max(len(b) for bufs in encoded.values() for b in bufs)
            compress_len = np.zeros((len(cameras), frames), np.float32)
            for c, cam in enumerate(cameras):
                rows = np.zeros((frames, padded), np.uint8)
                for i, buf in enumerate(encoded[cam]):
                    rows[i, : len(buf)] = buf
                    compress_len[c, i] = len(buf)
                images.create_dataset(cam, data=rows, chunks=(1, padded))
            f.create_dataset("compress_len", data=compress_len)
    return path


def write_generic_h5(path: Path, datasets: dict[str, tuple[int, int]]) -> Path:
    """Any layout: uint8 (T,H,W,3) image datasets at the given paths, {path: (frames, stream)}."""
    import h5py

    with h5py.File(path, "w") as f:
        for name, (n, stream) in datasets.items():
            f.create_dataset(name, data=np.stack([frame(stream, i) for i in range(n)]))
        f.create_dataset("meta/joint_positions", data=np.zeros((10, 7)))
    return path
