"""The one encoder interface every backend (torch, ONNX Runtime, TensorRT) implements.

``encode(images) -> Features`` always returns a batch (a single image gives a batch of one).
By default the arrays are numpy float32 whatever the backend, so code written against the ONNX
backend keeps working when the TensorRT or torch backend is swapped in; ``as_tensor=True``
returns torch tensors instead (kept on the GPU by the torch backend). ``run(pixels)`` is the
network alone on already-preprocessed input: what export's parity checks measure.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from vidistill.contract import EncoderContract
from vidistill.errors import VidistillError

from .features import Features, tokens_to_grid
from .preprocess import ImageBatch, as_image_batch, describe_rule, is_torch, preprocess_numpy

log = logging.getLogger(__name__)


class Encoder(ABC):
    """A frozen image encoder served from an artefact. Build one with :func:`load_encoder`.

    Preprocessing (size, resize rule, mean/std, channel order) comes from :attr:`contract`, which
    is read from the artefact itself, never from the caller.
    """

    backend: str = "?"

    def __init__(self, contract: EncoderContract, device: str, source: str) -> None:
        self._contract = contract
        self.device = device
        self.source = source
        self._warned_resize = False

    # -- what the encoder expects and returns (all from the contract) --------------------------
    @property
    def contract(self) -> EncoderContract:
        return self._contract

    @property
    def embed_dim(self) -> int:
        return self._contract.embed_dim

    @property
    def patch_size(self) -> int:
        return self._contract.patch_size

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the network input."""
        return self._contract.image_size

    @property
    def grid_size(self) -> tuple[int, int]:
        return self._contract.grid_size

    @property
    def num_patches(self) -> int:
        return self._contract.num_patches

    @property
    def mean(self) -> tuple[float, float, float]:
        return self._contract.mean

    @property
    def std(self) -> tuple[float, float, float]:
        return self._contract.std

    # -- encoding ------------------------------------------------------------------------------
    def encode(self, images: Any, *, as_tensor: bool = False) -> Features:
        """Encode RGB images (see :mod:`vidistill.runtime.preprocess` for the accepted forms).

        Returns :class:`Features` with ``cls`` (N, D) and ``patch_tokens`` (N, P, D): numpy float32
        by default, torch tensors with ``as_tensor=True``.
        """
        batch = as_image_batch(images)
        if batch.count == 0:
            h, w = self.grid_size
            cls = np.zeros((0, self.embed_dim), np.float32)
            tokens = np.zeros((0, h * w, self.embed_dim), np.float32)
            return Features(_to_torch(cls), _to_torch(tokens), self.grid_size) if as_tensor else Features(cls, tokens, self.grid_size)
        self._warn_resize_once(batch)
        cls, tokens = self._forward(batch)
        if as_tensor:
            cls, tokens = _to_torch(cls), _to_torch(tokens)
        else:
            cls, tokens = _to_numpy(cls), _to_numpy(tokens)
        return Features(cls, tokens, self.grid_size)

    __call__ = encode

    def preprocess(self, images: Any) -> np.ndarray:
        """The exact (N, 3, H, W) float32 network input for ``images`` (for debugging and parity)."""
        return preprocess_numpy(as_image_batch(images), self._contract)

    def run(self, pixels: Any) -> tuple[np.ndarray, np.ndarray]:
        """Preprocessed (N, 3, H, W) float32 -> (cls (N, D), patch_tokens (N, P, D)), numpy float32."""
        if is_torch(pixels):
            pixels = pixels.detach().cpu().numpy()
        cls, tokens = self._run(np.ascontiguousarray(pixels, dtype=np.float32))
        return _to_numpy(cls), _to_numpy(tokens)

    def extract(
        self, images: Iterable[Any], batch_size: int = 32, total: int | None = None, desc: str = "features",
        dtype: Any = None,
    ) -> tuple[Any, Any]:
        """Features of many images, read lazily and encoded in batches: ([CLS] (N, D), patch tokens
        (N, P, D)) as CPU torch tensors in ``dtype`` (default float32; float16 halves the memory of
        a cached probe training set)."""
        import torch
        from tqdm import tqdm

        dtype = dtype or torch.float32
        cls_out, patch_out = [], []
        with tqdm(total=total, desc=desc, unit="img", disable=None, leave=False) as bar:
            for batch in _batched(images, batch_size):
                f = self.encode(batch, as_tensor=True)
                cls_out.append(f.cls.to("cpu", dtype))
                patch_out.append(f.patch_tokens.to("cpu", dtype))
                bar.update(len(batch))
        if not cls_out:
            raise VidistillError("no images to extract features from")
        return torch.cat(cls_out), torch.cat(patch_out)

    def patch_maps(self, patches: Any) -> Any:
        """(N, P, D) row-major patch tokens -> (N, D, h, w) feature maps."""
        return tokens_to_grid(patches, self.grid_size)

    def _forward(self, batch: ImageBatch) -> tuple[Any, Any]:
        """Default path: host preprocessing, then the backend's :meth:`_run`."""
        return self._run(preprocess_numpy(batch, self._contract))

    @abstractmethod
    def _run(self, pixels: np.ndarray) -> tuple[Any, Any]:
        """(N, 3, H, W) normalised float32 -> (cls (N, D), patch_tokens (N, P, D))."""

    def close(self) -> None:
        """Release backend resources (sessions, engines, GPU buffers). Backends override this."""
        return None

    def __deepcopy__(self, memo: dict) -> Encoder:
        """An encoder is a frozen, shareable service: copies (e.g. gymnasium recording wrapper
        arguments, ``copy.deepcopy(env)``) share it instead of duplicating sessions and weights."""
        return self

    def __enter__(self) -> Encoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        c = self._contract
        return (
            f"{type(self).__name__}(backend={self.backend!r}, device={self.device!r}, model={c.model_name!r}, "
            f"image_size={c.image_size}, grid={c.grid_size}, embed_dim={c.embed_dim}, source={self.source!r})"
        )

    def _warn_resize_once(self, batch: ImageBatch) -> None:
        if self._warned_resize or not batch.needs_resize(self.image_size):
            return
        self._warned_resize = True
        sizes = ", ".join(f"{h}x{w}" for h, w in batch.sizes)
        h, w = self.image_size
        if all(ih * w == iw * h for ih, iw in batch.sizes):
            # Already the encoder's aspect: only the scale differs, nothing is cut or padded.
            log.warning("input images are %s (HxW), the encoder takes %dx%d (same aspect): each image is resized "
                        "with antialiased %s. Feed %dx%d images to skip this. Shown once per encoder.",
                        sizes, h, w, self._contract.interpolation, h, w)
            return
        log.warning(
            "input images are %s (HxW) but the encoder takes %dx%d (from its contract): each image is %s "
            "(the contract's rule, resize=%r). Feed %dx%d images, or export at your camera's aspect "
            "(`vidistill export --image-size HxW`), to skip this. Shown once per encoder.",
            sizes, h, w, describe_rule(self._contract), self._contract.resize, h, w,
        )


def _batched(items: Iterable, n: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x if x.dtype == np.float32 else x.astype(np.float32)
    return x.detach().float().cpu().numpy()


def _to_torch(x: Any) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
