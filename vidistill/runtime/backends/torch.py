"""PyTorch backend: the timm encoder itself, a first-class serving path where no TensorRT or
ONNX Runtime GPU build exists.

On CUDA it runs in bf16 autocast by default (``precision="fp32"`` to opt out) and can be
compiled (``compile="default"``; ``"reduce-overhead"`` replays CUDA graphs). numpy inputs are
preprocessed on the host exactly as the ONNX/TensorRT backends do; torch tensors stay on their
device: resized there by two small matrix products with PIL's coefficients
(:func:`~vidistill.runtime.preprocess.resize_matrix`) under the contract's rule, and normalised
there, so a GPU camera pipeline never round-trips through the host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vidistill.contract import EncoderContract

from ..encoder import Encoder
from ..preprocess import (
    HWC_UINT8,
    ImageBatch,
    Placement,
    fit_box,
    normaliser,
    preprocess_numpy,
    resize_matrix,
)
from ..torch_model import TokenEncoder, load_token_encoder, resolve_device, torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune")


class TorchEncoder(Encoder):
    """A :class:`TokenEncoder` in ``torch.inference_mode`` on ``device``.

    ``precision``: "auto" (bf16 autocast on CUDA, fp32 on CPU), "fp32", "bf16", "fp16".
    ``compile``: None, or a ``torch.compile`` mode ("reduce-overhead" uses CUDA graphs).
    """

    backend = "torch"

    def __init__(
        self, model: TokenEncoder, contract: EncoderContract, device: str | None = None, source: str = "",
        precision: str = "auto", compile: str | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {COMPILE_MODES}, got {compile!r}")
        device = resolve_device(device)
        super().__init__(contract, device, source)
        on_cuda = device.startswith("cuda")
        self.precision = ("bf16" if on_cuda else "fp32") if precision == "auto" else precision
        self._autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        self.model = model.eval().to(device).requires_grad_(False)
        self._call = torch.compile(self.model, mode=compile) if compile else self.model
        scale255, bias = normaliser(contract, 255.0)
        scale1, _ = normaliser(contract, 1.0)
        as_t = lambda a: torch.as_tensor(a, device=device).view(1, 3, 1, 1)  # noqa: E731
        self._scale = {255.0: as_t(scale255), 1.0: as_t(scale1)}
        self._bias = as_t(bias)

    @classmethod
    def from_path(
        cls, path: str | Path, device: str | None = None, *, image_size: Any = None, branch: str = "teacher",
        precision: str = "auto", compile: str | None = None,
    ) -> TorchEncoder:
        model, contract, used = load_token_encoder(path, image_size, branch)
        return cls(model, contract, device, str(used), precision=precision, compile=compile)

    def _forward(self, batch: ImageBatch) -> tuple[Any, Any]:
        if batch.torch:
            return self._run_tensor(self._preprocess_tensor(batch))
        return self._run(preprocess_numpy(batch, self.contract))

    def _run(self, pixels: np.ndarray) -> tuple[Any, Any]:
        return self._run_tensor(torch.from_numpy(pixels).to(self.device))

    def _run_tensor(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            if self._autocast is None:
                return self._call(x)
            with torch.autocast(x.device.type, dtype=self._autocast):
                cls, tokens = self._call(x)
            return cls.float(), tokens.float()

    def _preprocess_tensor(self, batch: ImageBatch) -> torch.Tensor:
        h, w = self.image_size
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
            if tuple(x.shape[-2:]) == (h, w):
                out.append(x * self._scale[max_value] + self._bias)
                continue
            place = fit_box(tuple(x.shape[-2:]), (h, w), self.contract.resize)
            region = self._resize(x, place)
            canvas = torch.zeros(x.shape[0], 3, h, w, device=x.device)  # letterbox border: 0 = mean colour
            canvas[..., place.top : place.top + place.h, place.left : place.left + place.w] = (
                region * self._scale[max_value] + self._bias
            )
            out.append(canvas)
        return out[0] if len(out) == 1 else torch.cat(out)

    def _resize(self, x: torch.Tensor, place: Placement) -> torch.Tensor:
        """The placement's box resized by PIL's two separable passes, in float like the host path."""
        x = x[..., place.y0 : place.y1, place.x0 : place.x1]
        interp = self.contract.interpolation
        if x.shape[-1] != place.w:  # an axis kept at its size: PIL's coefficients are the identity
            x = x @ torch.from_numpy(resize_matrix(int(x.shape[-1]), place.w, interp)).to(x.device).T
        if x.shape[-2] != place.h:
            x = torch.from_numpy(resize_matrix(int(x.shape[-2]), place.h, interp)).to(x.device) @ x
        return x

    def close(self) -> None:
        self.model = self._call = None
