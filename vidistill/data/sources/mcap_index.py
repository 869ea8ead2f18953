"""MCAP files read by record offsets: an index of every message by where it lies, built in one
pass, then any message read by one seek (and one chunk decompression, cached for the next read).

Why not through rosbags: its MCAP reader parses every record of a chunk for each message read
(a chunk also holds the robot's IMU, joint-state and tf messages: ~20 ms per frame measured
with 10,000 small messages per chunk), and it refuses a truncated file ("File end magic is
invalid"). The data section before a cut (a recording stopped by a crash or power loss) is still
a plain sequence of records (opcode u8, length u64, body), with messages either at top level or
inside chunks (each chunk holds its own schema and channel records before the messages that use
them); the scan stops at the first record that runs past the end of the file, so a truncated
file yields every whole message before the cut.

Record layouts: the MCAP specification (mcap.dev/spec), little-endian throughout.
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

MAGIC = b"\x89MCAP0\r\n"
OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK, OP_DATA_END, OP_FOOTER = 0x03, 0x04, 0x05, 0x06, 0x0F, 0x02
_RECORD = struct.Struct("<BQ")
_MESSAGE_HEAD = struct.Struct("<HIQQ")  # channel_id, sequence, log_time, publish_time
_CHUNK_HEAD = struct.Struct("<QQQI")  # message start/end time, uncompressed size, uncompressed crc


@dataclass
class McapIndex:
    """What a scan of a (possibly truncated) MCAP file found.

    ``messages[channel_id]`` is an int64 array of rows (log_time, chunk_offset, offset, length):
    the message body (serialized data) lies at ``offset`` in the decompressed chunk whose record
    starts at ``chunk_offset`` in the file, or at ``offset`` in the file when ``chunk_offset`` < 0.
    """

    path: str
    file_size: int
    readable_bytes: int  # the records up to here parsed; the rest of the file is lost
    complete: bool = False  # the data section ended properly (not cut off)
    topics: dict[int, str] = field(default_factory=dict)  # channel id -> topic
    schemas: dict[int, str] = field(default_factory=dict)  # channel id -> message type name
    messages: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def lost_bytes(self) -> int:
        return self.file_size - self.readable_bytes


def _string(buf: bytes | memoryview, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<I", buf, pos)
    return bytes(buf[pos + 4 : pos + 4 + n]).decode(), pos + 4 + n


def _decompress(compression: str, data: bytes, size: int) -> bytes:
    if compression == "":
        return data
    if compression == "lz4":
        import lz4.frame

        return lz4.frame.decompress(data)
    if compression == "zstd":
        if sys.version_info >= (3, 14):
            from compression import zstd
        else:
            from backports import zstd
        return zstd.decompress(data)
    raise ValueError(f"unknown chunk compression {compression!r}")


def _chunk_records(body: bytes, partial: bool = False) -> tuple[int, bytes]:
    """(where the records start in the body, the decompressed records) of a chunk record's body.
    ``partial``: the body is cut short; only an uncompressed chunk can give its first records."""
    _, _, size, _ = _CHUNK_HEAD.unpack_from(body, 0)
    compression, pos = _string(body, _CHUNK_HEAD.size)
    (length,) = struct.unpack_from("<Q", body, pos)
    records = bytes(body[pos + 8 : pos + 8 + length])
    if partial and compression:
        raise ValueError("a compressed chunk cut short")
    return pos + 8, _decompress(compression, records, size) if not partial else records


class _Scan:
    def __init__(self, path: str, file_size: int):
        self.index = McapIndex(path, file_size, 0)
        self.schema_names: dict[int, str] = {}
        self.rows: dict[int, list[tuple[int, int, int, int]]] = {}

    def record(self, op: int, body: bytes | memoryview, body_at: int, length: int, chunk_offset: int) -> None:
        """Index one schema, channel or message record (``length`` bytes at ``body_at``; of a
        message, ``body`` may be just its head: the data stays on disk)."""
        if op == OP_SCHEMA:
            (schema_id,) = struct.unpack_from("<H", body, 0)
            self.schema_names[schema_id] = _string(body, 2)[0]
        elif op == OP_CHANNEL:
            channel_id, schema_id = struct.unpack_from("<HH", body, 0)
            self.index.topics[channel_id] = _string(body, 4)[0]
            self.index.schemas[channel_id] = self.schema_names.get(schema_id, "")
        elif op == OP_MESSAGE:
            channel_id, _, log_time, _ = _MESSAGE_HEAD.unpack_from(body, 0)
            self.rows.setdefault(channel_id, []).append(
                (log_time, chunk_offset, body_at + _MESSAGE_HEAD.size, length - _MESSAGE_HEAD.size)
            )

    def chunk(self, records: bytes, chunk_offset: int) -> int:
        """Index a chunk's records; returns how many bytes of them were whole."""
        pos = 0
        while pos + _RECORD.size <= len(records):
            op, length = _RECORD.unpack_from(records, pos)
            body_at = pos + _RECORD.size
            if body_at + length > len(records):
                break  # the cut runs through this record
            try:
                self.record(op, memoryview(records)[body_at : body_at + length], body_at, length, chunk_offset)
            except (struct.error, ValueError):
                break
            pos = body_at + length
        return pos

    def file(self, f: BinaryIO) -> None:
        """Walk the top-level records up to the end of the data section or the cut."""
        pos = len(MAGIC)
        size = self.index.file_size
        self.index.readable_bytes = pos
        while pos + _RECORD.size <= size:
            f.seek(pos)
            op, length = _RECORD.unpack(f.read(_RECORD.size))
            body_at = pos + _RECORD.size
            if op in (OP_DATA_END, OP_FOOTER):
                self.index.complete = True
                return
            cut = body_at + length > size
            if op == OP_CHUNK:
                # An uncompressed chunk (rosbag2's default) cut in the middle still holds whole
                # messages before the cut; a compressed one is lost with its tail.
                try:
                    records_at, records = _chunk_records(f.read(length), partial=cut)
                except Exception:  # damaged or compressed and cut: nothing after this is trusted
                    return
                whole = self.chunk(records, pos)
                if cut:
                    self.index.readable_bytes = body_at + records_at + whole
                    return
            elif cut:
                return
            elif op in (OP_SCHEMA, OP_CHANNEL, OP_MESSAGE):
                try:  # a message's data stays on disk: its head is enough
                    self.record(op, f.read(length if op != OP_MESSAGE else _MESSAGE_HEAD.size), body_at, length, -1)
                except (struct.error, ValueError):  # a garbled record: nothing after it is trusted
                    return
            pos = body_at + length
            self.index.readable_bytes = pos


def scan(path: str | Path) -> McapIndex:
    """Index every message of an MCAP file up to where it is cut off (one pass over the file)."""
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise ValueError("not an MCAP file (bad magic)")
        state = _Scan(str(path), f.seek(0, 2))
        state.file(f)
    state.index.messages = {cid: np.asarray(rows, np.int64).reshape(-1, 4) for cid, rows in state.rows.items()}
    return state.index


class McapReader:
    """Reads messages of an :class:`McapIndex` by location; keeps the last decompressed chunk."""

    def __init__(self, path: str):
        self.path = path
        self._file: BinaryIO | None = open(path, "rb")  # noqa: SIM115 (closed by close())
        self._chunk_offset = -1
        self._chunk = b""

    def read(self, chunk_offset: int, offset: int, length: int) -> bytes:
        assert self._file is not None
        if chunk_offset < 0:
            self._file.seek(offset)
            return self._file.read(length)
        if chunk_offset != self._chunk_offset:
            self._file.seek(chunk_offset)
            _, record_length = _RECORD.unpack(self._file.read(_RECORD.size))
            body = self._file.read(record_length)
            self._chunk = _chunk_records(body, partial=len(body) < record_length)[1]
            self._chunk_offset = chunk_offset
        return self._chunk[offset : offset + length]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
