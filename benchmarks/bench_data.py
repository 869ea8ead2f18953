"""Data pipeline cost per clip for each input format and codec, against the JPEG-cache floor,
and the video decoder chosen (PyAV) against its measured alternative (OpenCV).

The floor is the bare cost of a clip's frames: reading its K cached JPEG files and
``cv2.imdecode``-ing them. Rows (one worker, ``num_workers=0`` loop, clips in shuffled order like
training, cpu-tiny sizes: K=3, Δ=30, 96/48 px views, a generated textured scene, 256x192 quick,
640x480 full):

* ``floor``: read + imdecode of the K cached files;
* ``cache frames``: the dataset's frame loading from the cache (RGB, exact indices); goal <= 1.5x floor;
* ``video frames``: the same from an AV1 mp4 as LeRobot writes it (libsvtav1, g=2) via PyAV;
* ``video frames <codec>``: the same for H.264 (g=30, B-frames) and MPEG-4 part 2 (g=12);
* ``frame folder frames (png)``: one PNG per frame;
* ``lerobot v3.0 frames``: the AV1 video cut into 4 episodes of one concatenated mp4, and the same
  frames as an image feature (PNG bytes in the data parquet, 100-row groups);
* ``cache clip`` / ``video clip``: a whole dataset item (frames + all views, normalised);
* ``... chains of 8``: the same in the order one DataLoader worker reads clips with
  ``data.chain_length 8`` (8 lanes: batch 8), frames shared through the dataset's ``FrameMemo``;
* ``video clip (views on the device ...)``: with ``data.views_on device``, what is left in the
  worker (decode, the region cut, the parameter draws, the batch's collation), and what the
  trainer then spends rendering those views on this CPU (on a GPU it is the GPU's);
* ``rgb conversion``: a decoded frame to RGB, PyAV's per-frame ``to_ndarray`` vs one kept
  ``VideoReformatter`` (what ``VideoFileSource`` uses), alternated, pixels compared;
* ``decoder <lib> <codec>``: the bare decoder reading a clip's K frames by seeking (``pyav``: our
  VideoFileSource; ``opencv``: ``CAP_PROP_POS_FRAMES`` + ``read``), and the fraction of frames
  that equal the sequential decode (``exact``). OpenCV 5.0's wheel decodes 0 AV1 frames;
* ``loader, 2 workers``: batches/s of the real DataLoader from the cache (full mode only);
* ``log frames <format>``: the same from robot logs (``write_robot_logs``): ROS 1 bags (raw rgb8,
  JPEG CompressedImage), rosbag2 mcap and sqlite3 (raw rgb8), HDF5 robomimic (gzip), ALOHA raw
  and ALOHA JPEG-padded; ``open_ms_per_frame``: discovery's cost (ROS 2 bags read every image message).

    python -m benchmarks.bench_data            # quick
    python -m benchmarks.bench_data --full
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from vidistill.config import build_config
from vidistill.data.cache import extract_cache
from vidistill.data.clips import chained_order
from vidistill.data.dataset import FrameMemo, build_dataloader, build_dataset
from vidistill.data.device_views import DeviceViews, collate_raw_clips

# OpenCV's FFmpeg prints 3 lines per AV1 frame it fails to decode (the decoder row shows the failure).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

CHAIN, LANES = 8, 8  # data.chain_length, and one worker's lanes at cpu-tiny's batch of 8
SIZE = (256, 192)
FULL_SIZE = (640, 480)
# (label, PyAV encoder, keyframe interval, encoder options): what robot logs hold.
CODECS = (
    ("av1 g=2", "libsvtav1", 2, {"preset": "12", "crf": "30"}),  # LeRobot's defaults (g=2, crf 30)
    ("h264 g=30", "libx264", 30, {"preset": "veryfast", "bf": "2"}),
    ("mpeg4 g=12", "mpeg4", 12, {}),
)


def scene(num_frames: int, size: tuple[int, int]):
    """RGB frames of a textured scene panning across the view (realistic codec cost, unlike flat colour)."""
    w, h = size
    rng = np.random.default_rng(0)
    world = cv2.GaussianBlur(rng.integers(0, 255, (h, w * 4, 3), dtype=np.uint8), (0, 0), 2.0)
    yy, xx = np.mgrid[0:h, 0 : w * 4]
    world[..., 0] = (world[..., 0] // 2 + (xx % 255) // 2).astype(np.uint8)
    world[..., 1] = (world[..., 1] // 2 + (yy * 255 // h) // 2).astype(np.uint8)
    for i in range(num_frames):
        x = (i * 2) % (w * 3)
        yield np.ascontiguousarray(world[:, x : x + w])


def write_video(path: Path, num_frames: int, size: tuple[int, int] = SIZE, codec: str = "libsvtav1",
                gop: int = 2, options: dict | None = None) -> Path:
    """The scene encoded by PyAV's FFmpeg (the encoders robot logging stacks use)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=30)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.gop_size = gop
        stream.options = dict(options or {})
        for rgb in scene(num_frames, size):
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_frames(folder: Path, num_frames: int, size: tuple[int, int]) -> Path:
    folder.mkdir(parents=True)
    for i, rgb in enumerate(scene(num_frames, size)):
        cv2.imwrite(str(folder / f"{i:06d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return folder


def write_lerobot_v30(root: Path, video: Path, num_frames: int, episodes: int = 4) -> Path:
    """A LeRobot v3.0 dataset around ``video`` (AV1 g=2, what LeRobot writes): its frames cut into
    ``episodes`` episodes of one concatenated mp4 (camera ``top``), and the same frames as PNG bytes
    in the data parquet (camera ``wrist``, an image feature), laid out as lerobot writes them."""
    import json
    import shutil

    import av
    import pyarrow as pa
    import pyarrow.parquet as pq

    with av.open(str(video)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)][:num_frames]
    h, w = frames[0].shape[:2]
    length = num_frames // episodes
    feature = {"shape": [h, w, 3], "names": ["height", "width", "channels"]}
    info = {"codebase_version": "v3.0", "fps": 30, "chunks_size": 1000,
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": {"top": {"dtype": "video", **feature, "info": {"video.codec": "av1", "video.is_depth_map": False}},
                         "wrist": {"dtype": "image", **feature}}}
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps(info))
    pq.write_table(pa.table({
        "episode_index": list(range(episodes)), "length": [length] * episodes,
        "data/chunk_index": [0] * episodes, "data/file_index": [0] * episodes,
        "videos/top/chunk_index": [0] * episodes, "videos/top/file_index": [0] * episodes,
        "videos/top/from_timestamp": [e * length / 30 for e in range(episodes)],
    }), root / "meta/episodes/chunk-000/file-000.parquet")
    (root / "videos/top/chunk-000").mkdir(parents=True)
    shutil.copy(video, root / "videos/top/chunk-000/file-000.mp4")
    pngs = [{"bytes": cv2.imencode(".png", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1].tobytes(), "path": None}
            for f in frames[: length * episodes]]
    (root / "data/chunk-000").mkdir(parents=True)
    pq.write_table(pa.table({
        "episode_index": [i // length for i in range(length * episodes)],
        "wrist": pa.array(pngs, pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
    }), root / "data/chunk-000/file-000.parquet", row_group_size=100)  # HF datasets' image row groups
    return root


def decoder_rows(path: Path, label: str, index, clips: list[int], repeats: int) -> list[dict]:
    """PyAV (VideoFileSource) vs OpenCV reading each clip's K frames at random starts."""
    import av

    from vidistill.data.sources import VideoFileSource

    with av.open(str(path)) as c:
        reference = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    src = VideoFileSource(path)
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)

    def opencv_frame(i: int) -> np.ndarray | None:
        cap.set(cv2.CAP_PROP_POS_FRAMES, i)
        ok, bgr = cap.read()
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if ok else None

    rows = []
    for lib, read in (("pyav", src.read), ("opencv", opencv_frame)):
        checked = [read(i) for _, frames in map(index.frames, clips[:10]) for i in frames]
        wanted = [reference[i] for _, frames in map(index.frames, clips[:10]) for i in frames]
        decoded = [f is not None for f in checked]
        exact = sum(f is not None and f.shape == r.shape and np.abs(f.astype(int) - r).mean() < 1.0
                    for f, r in zip(checked, wanted, strict=True)) / len(wanted)
        if not all(decoded):
            rows.append({"bench": "data", "case": f"decoder {lib} {label}", "ms_per_clip": None,
                         "clips_per_s": None, "x_floor": None, "exact": round(exact, 3),
                         "note": f"decodes {sum(decoded)} of {len(decoded)} frames"})
            continue
        sec = _time_per_clip(lambda c, read=read: [read(i) for i in index.frames(c)[1]], clips, repeats)
        rows.append({"bench": "data", "case": f"decoder {lib} {label}", "ms_per_clip": round(sec * 1e3, 3),
                     "clips_per_s": round(1.0 / sec, 1), "x_floor": None, "exact": round(exact, 3)})
    cap.release()
    src.close()
    return rows


def conversion_rows(path: Path, repeats: int) -> list[dict]:
    """A decoded frame to RGB: PyAV's ``to_ndarray(format="rgb24")`` (a new swscale context per
    frame) vs one ``VideoReformatter`` kept for the decoder's life (what ``VideoFileSource`` does),
    alternated; ``exact``: share of frames with identical pixels."""
    import av
    from av.video.reformatter import VideoReformatter

    def decoded() -> list:  # fresh frames each time: PyAV keeps a converter on a frame it converted
        with av.open(str(path)) as c:
            return list(c.decode(video=0))[:100]

    keep = VideoReformatter()
    ways = {"per frame (to_ndarray)": lambda f: f.to_ndarray(format="rgb24"),
            "kept reformatter": lambda f: keep.reformat(f, format="rgb24").to_ndarray()}
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(repeats + 1):
        for name, way in ways.items():
            frames = decoded()
            t0 = time.perf_counter()
            for f in frames:
                way(f)
            times[name].append((time.perf_counter() - t0) / len(frames))
    exact = np.mean([np.array_equal(ways["kept reformatter"](f), g.to_ndarray(format="rgb24"))
                     for f, g in zip(decoded(), decoded(), strict=True)])
    return [{"bench": "data", "case": f"rgb conversion, {name}", "ms_per_frame": round(statistics.median(t[1:]) * 1e3, 3),
             "ms_per_clip": None, "clips_per_s": None, "x_floor": None, "exact": round(float(exact), 3),
             "note": f"{statistics.median(t[1:]) * 1e3:.3f} ms per frame"} for name, t in times.items()]


def _time_chained(ds, fn, clips: list[int], repeats: int) -> float:
    """Median seconds per clip of ``clips`` in their (chained) order, each pass from an empty memo."""
    times = []
    for _ in range(repeats + 1):  # the first pass warms the decoder up; not counted
        ds.memo = FrameMemo(2 * ds.index.num_frames * LANES)
        t0 = time.perf_counter()
        for c in clips:
            fn(c)
        times.append((time.perf_counter() - t0) / len(clips))
    return statistics.median(times[1:])


def _collating(ds):
    """``ds[(c, 0)]`` and, every LANES items, their batch (a worker's whole part with views on the device)."""
    pending = []

    def read(c: int) -> None:
        pending.append(ds[(c, 0)])
        if len(pending) == LANES:
            collate_raw_clips(pending)
            pending.clear()

    return read


def _time_per_clip(fn, clips: list[int], repeats: int) -> float:
    """Median over repeats of the mean seconds per clip (after one warm-up pass)."""
    for c in clips[: max(3, len(clips) // 10)]:
        fn(c)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for c in clips:
            fn(c)
        times.append((time.perf_counter() - t0) / len(clips))
    return statistics.median(times)


# ====================================================================== robot log formats
LOG_FRAMES = 300  # per log: enough for K=3, Δ=30 clips; raw 640x480 bags stay ~280 MB each


def write_robot_logs(folder: Path, num_frames: int, size: tuple[int, int]) -> dict[str, Path]:
    """The scene as robot logging stacks record it: ROS bags (rosbags' writers) and HDF5 episodes
    (h5py, in robomimic's and ALOHA's layouts). Formats whose library is missing are left out."""
    logs: dict[str, Path] = {}
    frames = list(scene(num_frames, size))
    jpegs = [cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].ravel()
             for f in frames]
    try:
        from rosbags.rosbag1 import Writer as Ros1Writer
        from rosbags.rosbag2 import StoragePlugin
        from rosbags.rosbag2 import Writer as Ros2Writer
        from rosbags.typesys import Stores, get_typestore
    except ImportError:
        pass
    else:
        def messages(ts, compressed: bool):
            t = ts.types
            for i in range(num_frames):
                stamp = t["builtin_interfaces/msg/Time"](sec=i // 30, nanosec=(i % 30) * 33_333_333)
                header = t["std_msgs/msg/Header"](
                    **({"seq": i} if "seq" in t["std_msgs/msg/Header"].__dataclass_fields__ else {}),
                    stamp=stamp, frame_id="cam")
                if compressed:
                    yield i, "sensor_msgs/msg/CompressedImage", t["sensor_msgs/msg/CompressedImage"](
                        header=header, format="rgb8; jpeg compressed bgr8", data=jpegs[i])
                else:
                    h, w = frames[i].shape[:2]
                    yield i, "sensor_msgs/msg/Image", t["sensor_msgs/msg/Image"](
                        header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
                        data=frames[i].ravel())

        ros1 = get_typestore(Stores.ROS1_NOETIC)
        for label, compressed in (("ros1 rgb8", False), ("ros1 jpeg", True)):
            path = folder / f"{label.replace(' ', '_')}.bag"
            with Ros1Writer(path) as bag:
                conn = None
                for i, msgtype, msg in messages(ros1, compressed):
                    conn = conn or bag.add_connection("/camera/image", msgtype, typestore=ros1)
                    bag.write(conn, 10**9 + i * 33_333_333, ros1.serialize_ros1(msg, msgtype))
            logs[f"rosbag {label}"] = path
        ros2 = get_typestore(Stores.ROS2_HUMBLE)
        for storage, plugin in (("mcap", StoragePlugin.MCAP), ("sqlite3", StoragePlugin.SQLITE3)):
            path = folder / f"ros2_{storage}"
            with Ros2Writer(path, version=9, storage_plugin=plugin) as bag:
                conn = None
                for i, msgtype, msg in messages(ros2, compressed=False):
                    conn = conn or bag.add_connection("/camera/image", msgtype, typestore=ros2)
                    bag.write(conn, 10**9 + i * 33_333_333, ros2.serialize_cdr(msg, msgtype))
            logs[f"rosbag ros2 {storage} rgb8"] = path
    try:
        import h5py
    except ImportError:
        return logs
    stack = np.stack(frames)
    with h5py.File(folder / "robomimic.hdf5", "w") as f:  # robomimic: gzip, h5py's own chunking
        f.create_dataset("data/demo_0/obs/agentview_image", data=stack, compression="gzip")
    logs["hdf5 robomimic gzip"] = folder / "robomimic.hdf5"
    with h5py.File(folder / "aloha_raw.hdf5", "w") as f:  # ALOHA: one chunk per frame
        f.create_dataset("observations/images/cam_high", data=stack, chunks=(1, *stack.shape[1:]))
    logs["hdf5 aloha raw"] = folder / "aloha_raw.hdf5"
    padded = np.zeros((num_frames, max(len(j) for j in jpegs)), np.uint8)
    for i, j in enumerate(jpegs):
        padded[i, : len(j)] = j
    with h5py.File(folder / "aloha_jpeg.hdf5", "w") as f:  # ALOHA compressed: zero-padded JPEG bytes
        f.create_dataset("observations/images/cam_high", data=padded, chunks=(1, padded.shape[1]))
        f.create_dataset("compress_len", data=np.array([[len(j) for j in jpegs]], np.float32))
    logs["hdf5 aloha jpeg-padded"] = folder / "aloha_jpeg.hdf5"
    return logs


def robot_log_rows(folder: Path, size: tuple[int, int], num_clips: int, repeats: int, base: float) -> list[dict]:
    """Per-clip frame loading from each robot log format (one open reader, shuffled clips) against
    the JPEG floor ``base``, and what discovering the log costs (ROS 2 bags: one pass over every image
    message; ROS 1: the bag's own index)."""
    from vidistill.data.sources import discover_sources

    rows: list[dict] = []
    for label, path in write_robot_logs(folder, LOG_FRAMES, size).items():
        t0 = time.perf_counter()
        sources = discover_sources([path])
        open_s = time.perf_counter() - t0
        cfg = build_config("cpu-tiny", overrides={"data.num_workers": 0, "data.videos": [str(path)]})
        ds = build_dataset(cfg, sources)
        clips = np.random.default_rng(0).permutation(len(ds))[:num_clips].tolist()
        sec = _time_per_clip(ds.frames, clips, repeats)
        rows.append({
            "bench": "data", "case": f"log frames {label}", "ms_per_clip": round(sec * 1e3, 3),
            "clips_per_s": round(1.0 / sec, 1), "x_floor": round(sec / base, 2),
            "open_ms_per_frame": round(open_s * 1e3 / LOG_FRAMES, 3),
            "log": f"{size[0]}x{size[1]}, {LOG_FRAMES} frames",
        })
        for src in ds.sources:
            src.close()
    return rows


def run(quick: bool = True, size: tuple[int, int] | None = None) -> list[dict]:
    num_frames, num_clips, repeats = (300, 60, 3) if quick else (1800, 300, 5)
    size = size or (SIZE if quick else FULL_SIZE)
    torch.set_num_threads(1)  # one worker = one core (what a DataLoader worker gets)
    cv2.setNumThreads(1)
    os.environ["VIDISTILL_DECODER_THREADS"] = "1"  # like a DataLoader worker
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        videos = {label: write_video(Path(tmp) / f"scene_{enc}.mp4", num_frames, size, enc, gop, opts)
                  for label, enc, gop, opts in CODECS}
        video = videos[CODECS[0][0]]
        folder = write_frames(Path(tmp) / "frames", num_frames, size)
        cache = Path(tmp) / "cache"
        t0 = time.perf_counter()
        extract_cache([video], cache, workers=1, progress=False)
        extract_s = time.perf_counter() - t0

        over = {"data.num_workers": 0}
        ds_video = build_dataset(build_config("cpu-tiny", overrides={**over, "data.videos": [str(video)]}))
        ds_cache = build_dataset(build_config("cpu-tiny", overrides={**over, "data.videos": [str(cache)]}))
        k = ds_cache.index.num_frames
        clips = np.random.default_rng(0).permutation(len(ds_cache))[:num_clips].tolist()
        src = ds_cache.sources[0]

        def floor(c: int) -> None:
            _, frames = ds_cache.index.frames(c)
            for i in frames:
                data = np.fromfile(src._frame_path(i), dtype=np.uint8)
                cv2.imdecode(data, cv2.IMREAD_COLOR)

        base = _time_per_clip(floor, clips, repeats)

        def frames_of(path: Path, camera: str | None = None):
            cfg = build_config("cpu-tiny", overrides={**over, "data.videos": [str(path)],
                                                      "data.cameras": [camera] if camera else []})
            return build_dataset(cfg).frames

        lerobot = write_lerobot_v30(Path(tmp) / "lerobot", video, num_frames)
        lerobot_clips = np.random.default_rng(0).permutation(
            len(build_dataset(build_config("cpu-tiny", overrides={**over, "data.videos": [str(lerobot)],
                                                                  "data.cameras": ["top"]}))))[:num_clips].tolist()

        measured = {
            "floor (read+imdecode K jpegs)": base,
            "cache frames": _time_per_clip(ds_cache.frames, clips, repeats),
            "video frames": _time_per_clip(ds_video.frames, clips, repeats),
            **{f"video frames {label}": _time_per_clip(frames_of(videos[label]), clips, repeats)
               for label, *_ in CODECS[1:]},
            "frame folder frames (png)": _time_per_clip(frames_of(folder), clips, repeats),
            "lerobot v3.0 frames (av1 g=2, episodes of one mp4)": _time_per_clip(
                frames_of(lerobot, "top"), lerobot_clips, repeats),
            "lerobot v3.0 frames (png in parquet)": _time_per_clip(frames_of(lerobot, "wrist"), lerobot_clips, repeats),
            "cache clip (frames+views)": _time_per_clip(lambda c: ds_cache[(c, 0)], clips, repeats),
            "video clip (frames+views)": _time_per_clip(lambda c: ds_video[(c, 0)], clips, repeats),
        }
        # Chained order (data.chain_length 8, one worker's 8 lanes at batch 8): the clips in the
        # order that worker gets them, each repeat from an empty frame memo.
        chained = {}
        for name, path, camera, fn in (("video", video, None, "frames"), ("video", video, None, "clip"),
                                       ("video", video, None, "raw"),
                                       ("video h264 g=30", videos[CODECS[1][0]], None, "frames"),
                                       ("lerobot v3.0 (av1 g=2)", lerobot, "top", "frames")):
            cfg = build_config("cpu-tiny", overrides={**over, "data.videos": [str(path)], "data.chain_length": CHAIN,
                                                      "data.cameras": [camera] if camera else [],
                                                      "data.views_on": "device" if fn == "raw" else "worker"})
            ds = build_dataset(cfg)
            g = torch.Generator()
            g.manual_seed(0)
            order = chained_order(ds.index, CHAIN, LANES, g)[:num_clips].tolist()
            read = {"frames": ds.frames, "clip": lambda c, ds=ds: ds[(c, 0)], "raw": _collating(ds)}[fn]
            label = {"frames": "", "clip": " (frames+views)", "raw": " (views on the device: the worker's part)"}[fn]
            chained[f"{name} {'clip' if fn == 'raw' else fn}{label}, chains of {CHAIN}"] = _time_chained(
                ds, read, order, repeats)
            if fn == "raw":
                batch = collate_raw_clips([ds[(c, 0)] for c in order[:LANES]])
                render = DeviceViews(cfg.data, "cpu")
                chained["the views of those clips rendered by the trainer (CPU, 1 thread)"] = _time_per_clip(
                    lambda _, render=render, batch=batch: render(batch), [0] * 3, repeats) / LANES
        measured.update(chained)
        for name, sec in measured.items():
            rows.append({
                "bench": "data", "case": name, "ms_per_clip": round(sec * 1e3, 3),
                "clips_per_s": round(1.0 / sec, 1), "x_floor": round(sec / base, 2),
                "frames_per_clip": k, "video": f"{size[0]}x{size[1]} {CODECS[0][0]} (PyAV), {num_frames} frames",
            })
        for label, *_ in CODECS:
            rows += decoder_rows(videos[label], label, ds_cache.index, clips, repeats)
        rows += conversion_rows(video, repeats)
        rows += robot_log_rows(Path(tmp), size, num_clips, repeats, base)
        rows.append({
            "bench": "data", "case": "extract (1 process)", "ms_per_clip": None,
            "clips_per_s": None, "x_floor": None, "frames_per_s": round(num_frames / extract_s, 1),
        })
        if not quick:
            cfg = build_config("cpu-tiny", overrides={"data.videos": [str(cache)], "data.num_workers": 2})
            loader, _ = build_dataloader(cfg)
            it = iter(loader)
            next(it)  # worker start-up excluded
            n, t0 = 0, time.perf_counter()
            for batch in it:
                n += len(batch)
                if n >= 400:
                    break
            sec = (time.perf_counter() - t0) / n
            del it, loader  # stop the workers before the temporary cache disappears
            gc.collect()
            rows.append({
                "bench": "data", "case": "cache loader, 2 workers", "ms_per_clip": round(sec * 1e3, 3),
                "clips_per_s": round(1.0 / sec, 1), "x_floor": round(sec / base, 2),
            })
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'case':52s} {'ms/clip':>9s} {'clips/s':>9s} {'x floor':>8s} {'exact':>6s}")
    for r in rows:
        exact = f"{r['exact']:6.2f}" if r.get("exact") is not None else ""
        if r.get("ms_per_clip") is None:
            detail = r.get("note") or f"{r.get('frames_per_s', '')} frames/s"
            print(f"{r['case']:52s} {detail:>38s} {exact}")
            continue
        xf = f"{r['x_floor']:8.2f}" if r.get("x_floor") is not None else f"{'':8s}"
        opening = f"  open {r['open_ms_per_frame']:.2f} ms/frame" if "open_ms_per_frame" in r else ""
        print(f"{r['case']:52s} {r['ms_per_clip']:9.3f} {r['clips_per_s']:9.1f} {xf} {exact}{opening}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="longer video, more clips, DataLoader row")
    parser.add_argument("--size", default="", metavar="WxH", help="frame size (default 256x192, full 640x480)")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x")) if args.size else None
    print_table(run(quick=not args.full, size=size))


if __name__ == "__main__":
    main()
