"""ROS bags: ROS 1 ``.bag`` files and rosbag2 recordings (a folder with ``metadata.yaml`` and its
sqlite3 ``.db3`` or ``.mcap`` files, or a bare ``.db3`` / ``.mcap``), read without a ROS install by
``rosbags`` (the ``[ros]`` extra).

A bag is one episode; each topic of ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage`` is a
camera and one source, its frames the topic's messages in recording order (a dropped frame is
simply not there: strides count messages within the topic). Discovery indexes each topic once:
a ROS 1 bag from its own index (message times), read(i) then asks the bag for that topic's
messages in the 1 ns window at timestamp i; a sqlite3 bag the same after one pass over its image
messages; an MCAP file (bare or the one file of a rosbag2 folder) by one pass recording where
each message lies, read(i) then seeks there (:mod:`.mcap_index`).

Depth topics are skipped (reported by ``vidistill info``); an encoding we cannot convert to RGB is
an error naming it when nothing else in the bag trains. A truncated MCAP file (recording cut
off) trains on the messages before the cut, with a warning saying how much was lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vidistill.data.sources import mcap_index, ros_image
from vidistill.data.sources.base import Format, Opened, OpenOptions, VideoSource, natural_key
from vidistill.data.sources.handles import OpenFiles
from vidistill.errors import VideoError

log = logging.getLogger(__name__)

BAG_EXTENSIONS = (".bag", ".mcap", ".db3")
ROS_EXTRA = 'pip install "vidistill[ros]"'
# Open bag readers kept per process (all topics of one bag share one): see handles.py.
MAX_OPEN_BAGS = 8


def _rosbags() -> Any:
    """The ``rosbags`` package, or an error saying which extra installs it."""
    try:
        import rosbags.highlevel
        import rosbags.typesys
    except ImportError:
        raise VideoError(f"reading ROS bags needs the rosbags package: {ROS_EXTRA}") from None
    return rosbags


def _typestore(ros1: bool) -> Any:
    """Deserializer for the two image messages (identical in every ROS 1 / ROS 2 distribution)."""
    typesys = _rosbags().typesys
    store = typesys.get_typestore(typesys.Stores.ROS1_NOETIC if ros1 else typesys.Stores.LATEST)
    return store.deserialize_ros1 if ros1 else store.deserialize_cdr


# ============================================================================== open readers
class _Reader:
    """Raw messages of one bag by (topic, timestamp, rank among equal timestamps)."""

    def __init__(self, path: str):
        rosbags = _rosbags()
        self._bag = rosbags.highlevel.AnyReader([Path(path)])
        self._bag.open()
        self._connections: dict[str, list[Any]] = {}
        for conn in self._bag.connections:
            self._connections.setdefault(conn.topic, []).append(conn)

    def raw(self, topic: str, stamp: int, rank: int) -> bytes | None:
        window = self._bag.messages(connections=self._connections.get(topic, []), start=stamp, stop=stamp + 1)
        for n, (_, _, data) in enumerate(window):
            if n == rank:
                return data
        return None

    def close(self) -> None:
        self._bag.close()


_OPEN = OpenFiles(MAX_OPEN_BAGS)


# ==================================================================================== source
class RosbagSource(VideoSource):
    """One image topic of one bag. ``locations``: per frame, where its message is: (timestamp,
    rank among messages of the topic with that timestamp), or in an MCAP file read by offsets
    (chunk offset, offset, length)."""

    kind = "rosbag"

    def __init__(self, path: str, name: str, max_side: int, *, episode: str, topic: str, msgtype: str,
                 kind: ros_image.ImageKind, locations: np.ndarray, fps: float, size: tuple[int, int], ros1: bool,
                 by_offset: bool):
        super().__init__(path, name, max_side, camera=topic, episode=episode)
        self.topic, self.msgtype, self.codec = topic, msgtype, kind.codec
        self.channel_order = kind.channel_order
        self.locations = locations
        self.num_frames = len(locations)
        self.fps = fps
        self.native_size = size
        self.ros1, self.by_offset = ros1, by_offset
        self._reset_process_state()

    def _process_local(self) -> tuple[str, ...]:
        return (*super()._process_local(), "_deserialize")

    def _reset_process_state(self) -> None:
        super()._reset_process_state()
        self._deserialize: Callable[[bytes, str], Any] | None = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "codec": self.codec, "topic": self.topic}

    def _raw(self, index: int) -> bytes | None:
        if self.by_offset:
            return _OPEN.get(self.path, mcap_index.McapReader).read(*(int(x) for x in self.locations[index]))
        stamp, rank = (int(x) for x in self.locations[index])
        return _OPEN.get(self.path, _Reader).raw(self.topic, stamp, rank)

    def _decode(self, index: int) -> np.ndarray | None:
        data = self._raw(index)
        if data is None:
            return None
        if self._deserialize is None:
            self._deserialize = _typestore(self.ros1)
        try:
            msg = self._deserialize(data, self.msgtype)
        except Exception:  # a corrupt message: the damage policy substitutes a neighbour
            return None
        return ros_image.decode(self.msgtype, msg)

    def close(self) -> None:
        _OPEN.close(self.path)


# ================================================================================= discovery
def _is_rosbag2_folder(path: Path) -> bool:
    meta = path / "metadata.yaml"
    if not meta.is_file():
        return False
    try:
        with meta.open("r", errors="replace") as f:
            return "rosbag2_bagfile_information" in f.read(4096)
    except OSError:
        return False


def _claims(path: Path) -> bool:
    if path.is_file():
        return path.suffix.lower() in BAG_EXTENSIONS
    return path.is_dir() and _is_rosbag2_folder(path)


def _fps(stamps: np.ndarray) -> float:
    """Frames per second from the median message interval (robust to drops and pauses)."""
    if len(stamps) < 2:
        return 0.0
    step = float(np.median(np.diff(stamps)))
    return round(1e9 / step, 3) if step > 0 else 0.0


def _ranks(stamps: np.ndarray) -> np.ndarray:
    """For each message, how many earlier messages of its topic share its timestamp."""
    first = np.searchsorted(stamps, stamps, side="left")
    return np.arange(len(stamps)) - first


class _Topic:
    """What the index pass learns about one image topic."""

    def __init__(self, msgtype: str):
        self.msgtype = msgtype
        self.rows: list[tuple[int, ...]] = []  # (timestamp, location in an MCAP file...)
        self.kind: ros_image.ImageKind | None = None
        self.size = (0, 0)

    def first(self, data: bytes, deserialize: Callable[[bytes, str], Any]) -> None:
        """Learn the topic's encoding and size from its first message."""
        try:
            msg = deserialize(data, self.msgtype)
        except Exception:  # a corrupt or foreign message: say so instead of a traceback
            self.kind = ros_image.ImageKind(False, "?", reason=f"its first message is not a readable {self.msgtype}")
            return
        self.kind = ros_image.classify(self.msgtype, msg)
        if self.kind.usable:
            frame = ros_image.decode(self.msgtype, msg)
            if frame is None:
                self.kind = ros_image.ImageKind(False, self.kind.codec, reason="its first image does not decode")
            else:
                self.size = (frame.shape[1], frame.shape[0])


def _index_ros1(bag: Any, conns: list[Any], topics: dict[str, _Topic], deserialize: Callable) -> bool:
    """Index a ROS 1 bag from its own index (message times per connection, read when the bag
    opens) plus one message per topic, instead of reading every image: False when not possible."""
    readers = getattr(bag, "readers", [])
    indexes = getattr(readers[0], "indexes", None) if len(readers) == 1 and not bag.is2 else None
    if not isinstance(indexes, dict) or not all(c.id in indexes for c in conns):
        return False
    for conn in conns:  # in the connection order the bag's reader merges them in
        topics[conn.topic].rows.extend((entry.time,) for entry in indexes[conn.id])
    for name, topic in topics.items():
        if topic.rows:
            first = min(row[0] for row in topic.rows)
            topic_conns = [c for c in conns if c.topic == name]
            conn, _, data = next(bag.messages(connections=topic_conns, start=first, stop=first + 1))
            topic.first(data, deserialize)
    return True


def _index_bag(path: Path, wanted: Callable[[str], bool]) -> tuple[dict[str, _Topic], dict[str, str], bool]:
    """(the wanted image topics, every topic -> its type, is ROS 1) by one pass over the wanted
    image topics' messages."""
    rosbags = _rosbags()
    try:
        with rosbags.highlevel.AnyReader([path]) as bag:
            everything = {name: info.msgtype or "?" for name, info in bag.topics.items()}
            conns = [c for c in bag.connections if c.msgtype in ros_image.IMAGE_TYPES and wanted(c.topic)]
            topics = {c.topic: _Topic(c.msgtype) for c in conns}
            deserialize = _typestore(not bag.is2)
            if _index_ros1(bag, conns, topics, deserialize):
                return topics, everything, True
            for conn, stamp, data in bag.messages(connections=conns) if conns else ():  # () = all topics
                topic = topics[conn.topic]
                if topic.kind is None:
                    topic.first(data, deserialize)
                topic.rows.append((stamp,))
            return topics, everything, not bag.is2
    except rosbags.highlevel.AnyReaderError as e:
        raise VideoError(f"{path}: not a readable ROS bag ({e})") from None


def _index_mcap(path: Path, wanted: Callable[[str], bool]) -> tuple[dict[str, _Topic], dict[str, str],
                                                                  mcap_index.McapIndex]:
    """Like :func:`_index_bag` for an MCAP file, by where each message lies (up to a cut, if any)."""
    try:
        found = mcap_index.scan(path)
    except (OSError, ValueError) as e:
        raise VideoError(f"{path}: not a readable MCAP file ({e})") from None
    deserialize = _typestore(ros1=False)
    reader = mcap_index.McapReader(str(path))
    topics: dict[str, _Topic] = {}
    try:
        for cid, rows in found.messages.items():
            msgtype = found.schemas.get(cid, "")
            if msgtype not in ros_image.IMAGE_TYPES or not len(rows) or not wanted(found.topics[cid]):
                continue
            topic = topics.setdefault(found.topics[cid], _Topic(msgtype))
            if topic.kind is None:
                topic.first(reader.read(*(int(x) for x in rows[0, 1:])), deserialize)
            topic.rows.extend(map(tuple, rows.tolist()))
    finally:
        reader.close()
    everything = {found.topics[c]: found.schemas.get(c, "?") for c in found.topics}
    return topics, everything, found


def _mcap_of(path: Path) -> Path | None:
    """The one MCAP file a path is or holds (a rosbag2 folder of one file): read by offsets."""
    if path.is_file():
        return path if path.suffix.lower() == ".mcap" else None
    files = sorted(path.glob("*.mcap"), key=lambda p: natural_key(p.name))
    return files[0] if len(files) == 1 else None


def _recorded_counts(mcap: Path) -> dict[str, int]:
    """Messages per topic that rosbag2's ``metadata.yaml`` beside the file says were recorded
    (it is written when a recording stops cleanly, so a crash often leaves none: then {})."""
    meta = mcap.parent / "metadata.yaml"
    try:
        import yaml

        info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
        return {t["topic_metadata"]["name"]: int(t["message_count"]) for t in info["topics_with_message_count"]}
    except Exception:  # missing, unparsable or not rosbag2's: it says nothing about the loss
        return {}


def _warn_truncated(index: mcap_index.McapIndex, sources: list[VideoSource]) -> None:
    recorded = _recorded_counts(Path(index.path))
    parts = []
    for src in sources:
        total = recorded.get(src.camera)
        seconds = len(src) / src.fps if src.fps else 0.0
        parts.append(f"{src.camera}: {len(src)}" + (f" of {total}" if total else "") + f" frames ({seconds:.1f} s)")
    log.warning(
        "%s: truncated MCAP file (recording cut off?): training on what was written before the cut: %s; "
        "everything after it is lost%s", index.path, "; ".join(parts),
        "" if recorded else " (no metadata.yaml says how much was recorded)",
    )


def _storage(path: Path) -> str:
    """"ROS 1", "ROS 2 mcap" or "ROS 2 sqlite3" (what ``vidistill info`` shows)."""
    if path.suffix.lower() == ".bag":
        return "ROS 1"
    files = [path] if path.is_file() else list(path.iterdir())
    kinds = sorted({{".mcap": "mcap", ".db3": "sqlite3"}.get(p.suffix.lower(), "") for p in files} - {""})
    return f"ROS 2 {'+'.join(kinds)}".strip()


def _open(path: Path, name: str, options: OpenOptions) -> Opened:
    def wanted(topic: str) -> bool:  # index only the cameras asked for: the pass reads every image
        return not options.cameras or topic in options.cameras

    mcap = _mcap_of(path)
    index = None
    if mcap is not None:
        topics, everything, index = _index_mcap(mcap, wanted)
        ros1, source_path = False, str(mcap)
    else:
        topics, everything, ros1 = _index_bag(path, wanted)
        source_path = str(path)
    cameras = sorted(t for t, msgtype in everything.items() if msgtype in ros_image.IMAGE_TYPES)
    if not cameras:
        listing = ", ".join(f"{t} ({everything[t]})" for t in sorted(everything)) or "none"
        raise VideoError(
            f"{path}: no image topics (sensor_msgs/Image or CompressedImage) in this bag; its topics: {listing}"
        )
    truncated = index is not None and not index.complete
    detail = _storage(path) + (", truncated" if truncated else "")
    sources: list[VideoSource] = []
    skipped: list[str] = []
    for topic_name in sorted(topics):
        topic = topics[topic_name]
        if topic.kind is None:
            skipped.append(f"{name}:{topic_name}: no messages")
            continue
        if not topic.kind.usable:
            if topic_name in options.cameras:
                raise VideoError(f"{path}: camera {topic_name} cannot be used: {topic.kind.reason}")
            skipped.append(f"{name}:{topic_name}: {topic.kind.reason}")
            continue
        rows = np.asarray(topic.rows, np.int64)
        rows = rows[np.argsort(rows[:, 0], kind="stable")]  # time order (MCAP: channels of a topic merged)
        stamps = rows[:, 0]
        locations = np.stack([stamps, _ranks(stamps)], axis=1) if index is None else rows[:, 1:]
        sources.append(RosbagSource(
            source_path, f"{name}:{topic_name}", options.max_side, episode=name, topic=topic_name,
            msgtype=topic.msgtype, kind=topic.kind, locations=locations, fps=_fps(stamps), size=topic.size,
            ros1=ros1, by_offset=index is not None,
        ))
    if not sources and topics:  # image topics were asked for (or all were), and none can train
        raise VideoError(f"{path}: no usable image topic ({'; '.join(skipped)})")
    if truncated and sources:
        assert index is not None
        _warn_truncated(index, sources)
    return Opened(sources, skipped, cameras, detail)


FORMAT = Format("rosbag", "a ROS bag (.bag, .mcap, .db3, or a rosbag2 folder)", _claims, _open)
