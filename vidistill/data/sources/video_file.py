"""Video files (mp4, mkv, avi, ...), decoded with PyAV: one file is one source, or one window of
frames of it (a LeRobot v3.0 file concatenates many episodes; :mod:`.lerobot` makes one source
per episode window over one shared :class:`VideoIndex`).

Why PyAV. Robot logs are AV1 (LeRobot: libsvtav1, keyframe every 2 frames), H.264, HEVC, VP9.
The OpenCV wheel we had (opencv-python-headless 5.0.0.93) opens AV1 files and decodes 0 frames
(its FFmpeg has no AV1 decoder). PyAV ships its own FFmpeg with dav1d (no system FFmpeg) and
decodes all of these; torchcodec is faster at batched random access but needs a system FFmpeg
and matches one torch version. Measured (``python -m benchmarks.bench_data --size 640x480``, 2
shared cores, one decoder thread as in a DataLoader worker; a clip = K=3 frames 30 apart at a
random start, ms per clip; every frame checked equal to the sequential decode):

    ============================  =========  ============================
    video (640x480, 300 frames)   PyAV 18.1  OpenCV 5.0.0.93 (seek + read)
    ============================  =========  ============================
    AV1 (libsvtav1, g=2)          7.9        0 frames decoded
    H.264 (libx264, g=30, bf=2)   28.9       46.2
    MPEG-4 part 2 (g=12)          5.8        17.2
    JPEG cache (floor: 3 imread)  3.8
    ============================  =========  ============================

At 256x192: AV1 2.2, H.264 6.8 (OpenCV 8.4), MPEG-4 2.0 (OpenCV 3.6) ms per clip. PyAV is
exact and faster for every codec, so it is the one video decoder. OpenCV keeps
what it does best: JPEG decode (the frame cache, frame folders) and the INTER_AREA resize.

Exact random access. A probe demuxes every packet once (no decoding: ~µs per packet) and
records each frame's presentation timestamp and whether it is a keyframe. Frame ``i`` is then
the frame whose pts is the i-th smallest, whatever the codec reorders; reading it seeks to the
keyframe at or before it (``container.seek(..., backward=True)``) and decodes forward until that
pts comes out, or keeps decoding forward from the current position when that is shorter than
from the keyframe (a clip's K increasing frames of a g=2 AV1 file cost K short seeks; of a
long-GOP H.264 file, one seek and a forward decode).

Damage. A container that claims more frames than it holds packets for (a truncated recording:
a cut-off mkv/avi, or an mp4 written with its index first) trains on what reads: the tail is
decoded once at probe time to drop frames whose packets were cut, and one warning says how
many frames were lost. A cut-off mp4 whose index (moov) was at the end cannot be opened at all:
an error. A codec this FFmpeg cannot decode: an error naming the codec and what to do.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidistill.data.sources.base import Format, Opened, OpenOptions, VideoSource
from vidistill.data.sources.handles import OpenFiles
from vidistill.errors import VideoError

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".avi", ".mkv", ".mov", ".webm")
# Open decoders kept per process. A robot log can hold thousands of episodes; keeping one open
# decoder (and its buffers) per file in every DataLoader worker would exhaust memory and fds.
MAX_OPEN_DECODERS = 8
# Decoding forward this many frames more than a seek would is still preferred: a seek costs a
# demuxer reposition and a decoder flush on top of decoding from the keyframe.
SEEK_COST_FRAMES = 2
INSTALL_HINT = (
    "PyAV's own FFmpeg (pip install -U av) decodes AV1, H.264, HEVC, VP9 and most others; or "
    "re-encode the file, e.g. ffmpeg -i IN -c:v libx264 -g 30 OUT.mp4"
)


def _av() -> Any:
    try:
        import av
    except ImportError:  # a default dependency; only a broken install lands here
        raise VideoError("reading video files needs PyAV: pip install av") from None
    # PyAV's default log level (None) installs no Python log callback. Never set one: FFmpeg's
    # decoder threads would then need the GIL to log, and closing a frame-threaded decoder (which
    # waits for them while holding the GIL) deadlocks (observed: H.264 probe hung in
    # avcodec_free_context). Damage is reported by this module, once per source.
    return av


# ======================================================================================= probe
@dataclass
class VideoIndex:
    """What one demux pass learns about a video file (picklable; shared by its sources)."""

    path: str
    codec: str
    fps: float
    width: int
    height: int
    declared_frames: int  # what the container header claims (0 = unknown)
    pts: np.ndarray = field(repr=False)  # (N,) int64: presentation timestamp of frame i, increasing
    keyframes: np.ndarray = field(repr=False)  # (M,) int64: indices of keyframes, increasing
    seekable: bool = True  # False: timestamps missing or not unique; read from the start

    def __len__(self) -> int:
        return len(self.pts)

    def keyframe_before(self, index: int) -> int:
        """Index of the last keyframe at or before frame ``index`` (0 if none)."""
        k = int(np.searchsorted(self.keyframes, index, side="right")) - 1
        return int(self.keyframes[k]) if k >= 0 else 0


def _open_container(path: str) -> Any:
    av = _av()
    try:
        container = av.open(path, metadata_errors="ignore")
    except av.error.FFmpegError as e:
        raise VideoError(
            f"{path}: cannot be opened as a video (not a video, or a truncated/corrupt container: {e})"
        ) from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: holds no video stream")
    return container


def _codec_name(path: str, stream: Any) -> str:
    ctx = stream.codec_context
    if ctx is not None and ctx.codec is not None:  # "av1" (decoded by libdav1d), "h264", ...
        return str(getattr(ctx.codec, "canonical_name", None) or ctx.codec.name)
    # No decoder: FFmpeg gives PyAV no context to name it, so read the tag from the file itself.
    tag = _fourcc(path)
    return f"with fourcc {tag!r}" if tag else "(unknown to this FFmpeg)"


def _fourcc(path: str) -> str:
    """The video codec tag in an mp4/mov (``stsd`` sample entry) or avi (``strh`` of ``vids``)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 20)
    except OSError:
        return ""
    for marker, offset in ((b"stsd", 12), (b"vids", 4)):
        at = head.find(marker)
        if at >= 0 and len(head) >= at + offset + 4:
            tag = head[at + offset : at + offset + 4]
            if all(32 <= c < 127 for c in tag):
                return tag.decode()
    return ""


def _check_decodable(path: str, stream: Any) -> str:
    """The codec's name; an error naming it when this FFmpeg has no decoder for it."""
    av = _av()
    codec = _codec_name(path, stream)
    ctx = stream.codec_context
    try:
        if ctx is None or ctx.codec is None:
            raise ValueError
        av.codec.Codec(ctx.codec.name, "r")
    except (ValueError, av.error.FFmpegError, AttributeError):
        raise VideoError(
            f"{path}: video codec {codec} cannot be decoded by PyAV {av.__version__}'s FFmpeg. {INSTALL_HINT}"
        ) from None
    return codec


def probe_video(path: str | os.PathLike) -> VideoIndex:
    """Demux every packet of ``path`` once and decode what is needed to trust the count."""
    path = str(path)
    if os.path.getsize(path) == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    av = _av()
    container = _open_container(path)
    try:
        stream = container.streams.video[0]
        codec = _check_decodable(path, stream)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        declared = int(stream.frames or 0)
        pts: list[int] = []
        keys: list[int] = []  # pts of keyframes
        missing_pts = False
        try:
            for packet in container.demux(stream):
                if packet.size == 0:  # the flush packet at the end
                    continue
                t = packet.pts if packet.pts is not None else packet.dts
                if t is None:
                    missing_pts = True
                    t = len(pts)
                pts.append(int(t))
                if packet.is_keyframe:
                    keys.append(int(t))
        except av.error.FFmpegError:  # a cut-off file: what was demuxed so far is what there is
            pass
        order = np.sort(np.asarray(pts, dtype=np.int64))
        seekable = not missing_pts and len(np.unique(order)) == len(order)
        if not seekable:
            order = np.arange(len(pts), dtype=np.int64)
            keys = [0] if pts else []
        keyframes = np.searchsorted(order, np.asarray(sorted(keys), dtype=np.int64)) if keys else np.zeros(1, np.int64)
        index = VideoIndex(path, codec, fps if np.isfinite(fps) else 0.0, 0, 0, declared, order, keyframes, seekable)
    finally:
        container.close()
    if len(index) == 0:
        raise VideoError(f"{path}: no frame can be decoded (no video packets: not a video, or corrupt)")
    decoder = _Decoder(index, threads=0)
    try:
        first = decoder.frame(0)
        if first is None:
            raise VideoError(
                f"{path}: no frame can be decoded (codec {codec}; corrupt, or a decoder this FFmpeg "
                f"lacks. {INSTALL_HINT})"
            )
        index.height, index.width = first.shape[:2]
        # The header's count is checked against the packets found; only when they disagree (a cut
        # file) or the header has none (mkv, webm) is the tail decoded: a LeRobot v2 dataset has
        # thousands of files, and decoding each one's last GOP would dominate start-up.
        if declared > len(index) or (declared == 0 and not _last_frame_decodes(decoder, index)):
            _drop_undecodable_tail(decoder, index)
    finally:
        decoder.close()
    lost = max(declared, len(index)) - len(index) if declared else 0
    if lost > 0:
        log.warning(
            "%s: the container says %d frames but only %d decode (truncated?); training on those %d, "
            "%d frames unreadable", path, declared, len(index), len(index), lost,
        )
    return index


def _last_frame_decodes(decoder: _Decoder, index: VideoIndex) -> bool:
    return decoder.frame(len(index) - 1) is not None


def _drop_undecodable_tail(decoder: _Decoder, index: VideoIndex) -> None:
    """Shorten ``index`` to end at its last frame that decodes (the tail of a cut-off file)."""
    n = len(index)
    start = index.keyframe_before(n - 1)
    while n > 0:
        good = [i for i in range(start, n) if decoder.frame(i) is not None]
        if good:
            n = good[-1] + 1
            break
        n, start = start, index.keyframe_before(max(start - 1, 0))
    index.pts = index.pts[:n]
    index.keyframes = index.keyframes[index.keyframes < n]


# ===================================================================================== decoder
class _Decoder:
    """One open container of one file in one process, with a cursor (the next frame it yields)."""

    def __init__(self, index: VideoIndex, threads: int):
        av = _av()
        self.index = index
        self._error = av.error.FFmpegError
        self.container = _open_container(index.path)
        self.stream = self.container.streams.video[0]
        ctx = self.stream.codec_context
        ctx.thread_type = "AUTO"
        ctx.thread_count = threads
        # One colour converter for the decoder's life: PyAV's `frame.to_ndarray(format=...)` builds
        # a new swscale context per frame, 3.6x the cost of the conversion itself at 256x192
        # (0.48 vs 0.13 ms; the same pixels: benchmarks/README.md, "Clip path").
        self._rgb = av.video.reformatter.VideoReformatter()
        self._frames: Any = None  # generator of (index, rgb) from the cursor on
        self._pending: tuple[int, Any] | None = None  # decoded, not yet consumed
        self.next = -1  # index of the frame the generator yields next; -1 = not positioned

    def close(self) -> None:
        self._frames = None
        self.container.close()

    def _generate(self, start: int) -> Any:
        """(frame index, decoded frame) from the current demuxer position; colour conversion is
        left to the caller, for the one frame it wants (not for the frames decoded on the way)."""
        counter = start
        for packet in self.container.demux(self.stream):
            try:
                frames = packet.decode()
            except self._error:  # a corrupt packet: its frame is missing, the rest go on
                continue
            for frame in frames:
                if self.index.seekable and frame.pts is not None:
                    i = int(np.searchsorted(self.index.pts, frame.pts))
                    if i >= len(self.index.pts) or self.index.pts[i] != frame.pts:
                        continue  # not a frame of the index (beyond a truncation point)
                else:
                    i = counter
                counter = i + 1
                yield i, frame

    def _seek(self, index: int) -> None:
        if not self.index.seekable or index == 0:
            self.container.seek(0)  # the trusted start
            start = 0
        else:
            start = self.index.keyframe_before(index)
            self.container.seek(int(self.index.pts[start]), stream=self.stream, backward=True, any_frame=False)
        self._frames = self._generate(start)
        self._pending = None
        self.next = start

    def frame(self, index: int) -> np.ndarray | None:
        """Frame ``index`` (RGB, native size), or None when it does not decode."""
        forward = index - self.next
        from_keyframe = index - self.index.keyframe_before(index) if self.index.seekable else index
        if self._frames is None or forward < 0 or forward > from_keyframe + SEEK_COST_FRAMES:
            self._seek(index)
        while True:
            if self._pending is None:
                try:
                    self._pending = next(self._frames)
                except (StopIteration, self._error):
                    self._frames = None
                    return None
            i, frame = self._pending
            if i < index:
                self._pending = None
                continue
            if i > index:  # the frame asked for did not decode (corrupt packet)
                self.next = i
                return None
            self._pending = None
            self.next = index + 1
            return self._rgb.reformat(frame, format="rgb24").to_ndarray()


_OPEN = OpenFiles(MAX_OPEN_DECODERS)  # per process, keyed by file: sources of one file share its decoder


def _decoder_threads() -> int:
    """1 decoder thread inside DataLoader / extract workers (they are the parallelism), else auto."""
    if os.environ.get("VIDISTILL_DECODER_THREADS"):
        return int(os.environ["VIDISTILL_DECODER_THREADS"])
    tud = sys.modules.get("torch.utils.data")  # not imported: not a DataLoader worker (stay light)
    if tud is not None and tud.get_worker_info() is not None:
        return 1
    return 0


# ====================================================================================== source
class VideoFileSource(VideoSource):
    """Frames ``first .. first+length-1`` of a video file (by default: all of them)."""

    kind = "video"
    channel_order = "rgb"

    def __init__(self, path: str | os.PathLike, name: str | None = None, max_side: int = 0,
                 camera: str = "", episode: str = "", index: VideoIndex | None = None,
                 first: int = 0, length: int | None = None):
        super().__init__(path, name, max_side, camera=camera, episode=episode)
        self.index = index if index is not None else probe_video(path)
        self.first = int(first)
        available = len(self.index) - self.first
        self.num_frames = available if length is None else max(0, min(int(length), available))
        self.fps = self.index.fps
        self.native_size = (self.index.width, self.index.height)
        self.codec = self.index.codec

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "codec": self.codec}

    def _decode(self, index: int) -> np.ndarray | None:
        video = self.index
        return _OPEN.get(video.path, lambda _: _Decoder(video, _decoder_threads())).frame(self.first + index)

    def close(self) -> None:
        _OPEN.close(self.index.path)


def _claims(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS


def _open(path: Path, name: str, options: OpenOptions) -> Opened:
    return Opened([VideoFileSource(path, name, options.max_side)])


FORMAT = Format("video", f"a video file ({', '.join(VIDEO_EXTENSIONS)})", _claims, _open)

