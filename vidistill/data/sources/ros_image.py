"""How ``sensor_msgs/Image`` and ``sensor_msgs/CompressedImage`` messages become BGR frames.

Which encodings train: 8-bit colour, grey and Bayer images and JPEG/PNG compressed images. Depth
(16/32-bit single channel, ``compressedDepth``) is not a camera image for an RGB encoder: skipped.
Anything else is refused by name (a silent wrong conversion would train on garbage).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)

# encoding -> (bytes per pixel, channel order after the conversion, cv2 conversion to 3 channels
# or None). Frames stay in the order they are stored in (the source converts once, only if its
# caller wants the other order). OpenCV names Bayer patterns by the 2x2 block one pixel further
# in, hence rggb -> BayerBG (as cv_bridge does).
_RAW_ENCODINGS: dict[str, tuple[int, str, int | None]] = {
    "rgb8": (3, "rgb", None),
    "bgr8": (3, "bgr", None),
    "8UC3": (3, "bgr", None),  # cv_bridge's convention: untagged 3-channel bytes are BGR
    "rgba8": (4, "rgb", cv2.COLOR_RGBA2RGB),
    "bgra8": (4, "bgr", cv2.COLOR_BGRA2BGR),
    "8UC4": (4, "bgr", cv2.COLOR_BGRA2BGR),
    "mono8": (1, "rgb", cv2.COLOR_GRAY2RGB),
    "8UC1": (1, "rgb", cv2.COLOR_GRAY2RGB),
    "bayer_rggb8": (1, "rgb", cv2.COLOR_BayerBG2RGB),
    "bayer_bggr8": (1, "rgb", cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg8": (1, "rgb", cv2.COLOR_BayerGR2RGB),
    "bayer_grbg8": (1, "rgb", cv2.COLOR_BayerGB2RGB),
}
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1", "16SC1", "32SC1", "64FC1")
COMPRESSED_FORMATS = ("jpeg", "jpg", "png")


@dataclass(frozen=True)
class ImageKind:
    """What a topic's first message says about all of them."""

    usable: bool
    codec: str  # the encoding ("rgb8", "bayer_rggb8") or compressed format ("jpeg", "png")
    channel_order: str = "bgr"  # of the frames :func:`decode` returns
    reason: str = ""  # why not usable: "depth", "unsupported encoding yuv422"


def classify(msgtype: str, msg: object) -> ImageKind:
    """Whether a message of an image topic can train, from its encoding (or compressed format)."""
    if msgtype == COMPRESSED_IMAGE:
        fmt = str(msg.format)  # type: ignore[attr-defined]
        lowered = fmt.lower()
        if "compresseddepth" in lowered or any(d.lower() in lowered for d in DEPTH_ENCODINGS):
            return ImageKind(False, fmt, reason=f"depth images ({fmt!r})")
        for codec in COMPRESSED_FORMATS:
            if codec in lowered:
                return ImageKind(True, "png" if codec == "png" else "jpeg")
        # Drivers that leave ``format`` empty still publish JPEG or PNG: trust the bytes.
        if not fmt and decode_compressed(msg) is not None:
            return ImageKind(True, "jpeg/png")
        return ImageKind(False, fmt, reason=f"unsupported compressed format {fmt!r} (JPEG and PNG are read)")
    encoding = str(msg.encoding)  # type: ignore[attr-defined]
    if encoding in _RAW_ENCODINGS:
        return ImageKind(True, encoding, _RAW_ENCODINGS[encoding][1])
    if encoding in DEPTH_ENCODINGS:
        return ImageKind(False, encoding, reason=f"depth images ({encoding})")
    return ImageKind(False, encoding, reason=f"unsupported image encoding {encoding!r} "
                     f"(read: {', '.join(_RAW_ENCODINGS)})")


def decode_compressed(msg: object) -> np.ndarray | None:
    """A CompressedImage's JPEG/PNG bytes as BGR uint8 (H, W, 3), or None when they do not decode."""
    data = np.frombuffer(memoryview(msg.data), np.uint8)  # type: ignore[attr-defined]
    if data.size == 0:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return image if image is not None and image.dtype == np.uint8 else None


def decode_raw(msg: object) -> np.ndarray | None:
    """An Image's pixels as uint8 (H, W, 3) in its :class:`ImageKind` channel order, honouring
    ``step`` (row padding); None when the data is short."""
    encoding = str(msg.encoding)  # type: ignore[attr-defined]
    channels, _, conversion = _RAW_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)  # type: ignore[attr-defined]
    data = np.frombuffer(memoryview(msg.data), np.uint8)  # type: ignore[attr-defined]
    if height <= 0 or width <= 0 or step < width * channels or data.size < height * step:
        return None
    rows = data[: height * step].reshape(height, step)[:, : width * channels]
    pixels = rows.reshape(height, width, channels)
    if conversion is None:
        return np.ascontiguousarray(pixels)
    return cv2.cvtColor(pixels[..., 0] if channels == 1 else pixels, conversion)


def decode(msgtype: str, msg: object) -> np.ndarray | None:
    """A usable image message (see :func:`classify`) as uint8 (H, W, 3) in its channel order."""
    return decode_compressed(msg) if msgtype == COMPRESSED_IMAGE else decode_raw(msg)
