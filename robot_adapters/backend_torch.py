"""PyTorch backend: the timm backbone itself (from an export folder's safetensors or a checkpoint).

numpy inputs are preprocessed exactly as in the ONNX/TensorRT backends (cv2, see
:mod:`~vidistill.robot_adapters.preprocess`). torch tensors stay on their device: moved to the
encoder's device, resized there by two small matrix products that reproduce cv2.INTER_AREA /
INTER_LINEAR (so features match the numpy path to float precision), and normalised there, so a GPU camera pipeline never round-trips through the host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vidistill.contract import EncoderContract

from .encoder import Encoder
from .preprocess import HWC_UINT8, ImageBatch, interpolation_for, normaliser, preprocess_numpy, resize_matrix
from .torch_loading import import_torch, load_backbone, split_tokens


def default_torch_device() -> str:
    torch = import_torch()
    return "cuda" if torch.cuda.is_available() else "cpu"


class TorchEncoder(Encoder):
    """Eager timm backbone, fp32, in ``torch.inference_mode``."""

    backend = "torch"

    def __init__(self, model: Any, contract: EncoderContract, device: str | None = None, source: str = "") -> None:
        torch = import_torch()
        device = device or default_torch_device()
        super().__init__(contract, device, source)
        self._torch = torch
        self.model = model.eval().to(device)
        for p in self.model.parameters():
            p.requires_grad_(False)
        scale255, bias = normaliser(contract, 255.0)
        scale1, _ = normaliser(contract, 1.0)
        as_t = lambda a: torch.as_tensor(a, device=device).view(1, 3, 1, 1)  # noqa: E731
        self._scale = {255.0: as_t(scale255), 1.0: as_t(scale1)}
        self._bias = as_t(bias)

    @classmethod
    def from_path(cls, path: str | Path, device: str | None = None) -> TorchEncoder:
        model, contract, used = load_backbone(path)
        return cls(model, contract, device, str(used))

    def _forward(self, batch: ImageBatch) -> tuple[Any, Any]:
        if batch.torch:
            return self._run_tensor(self._preprocess_tensor(batch))
        return self._run(preprocess_numpy(batch, self.contract))

    def _run(self, pixels: np.ndarray) -> tuple[Any, Any]:
        return self._run_tensor(self._torch.from_numpy(pixels).to(self.device))

    def _run_tensor(self, x: Any) -> tuple[Any, Any]:
        with self._torch.inference_mode():
            tokens = self.model.forward_features(x)
            cls, patches = split_tokens(tokens, self.contract.num_prefix_tokens)
        return cls, patches

    def _preprocess_tensor(self, batch: ImageBatch) -> Any:
        torch = self._torch
        size = self.image_size
        items = batch.data if isinstance(batch.data, list) else [batch.data]
        out = []
        for x in items:
            x = x.to(self.device, non_blocking=True)
            if x.dim() == 3:
                x = x[None]
            if batch.layout == HWC_UINT8:
                x, max_value = x.permute(0, 3, 1, 2).float(), 255.0
            else:
                x, max_value = x.float(), 1.0
            h, w = x.shape[-2:]
            if (h, w) != (size, size):
                x = self._resize(x, int(h), int(w), round_result=batch.layout == HWC_UINT8)
            out.append(x * self._scale[max_value] + self._bias)
        return out[0] if len(out) == 1 else torch.cat(out)

    def _resize(self, x: Any, h: int, w: int, round_result: bool) -> Any:
        """Resize (N, C, h, w) to the contract size exactly as cv2 does (see ``resize_matrix``)."""
        area = bool(interpolation_for((h, w), self.image_size) == cv2.INTER_AREA)
        size = self.image_size
        rh = self._torch.from_numpy(resize_matrix(h, size, area)).to(x.device)
        rw = self._torch.from_numpy(resize_matrix(w, size, area)).to(x.device)
        x = rh @ x @ rw.T
        return x.round_() if round_result else x  # cv2 rounds uint8 results

    def close(self) -> None:
        self.model = None
