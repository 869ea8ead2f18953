"""TensorRT backend: runs a serialised ``encoder.engine`` (TensorRT 10 API, ``execute_async_v3``).

One availability probe (:func:`tensorrt_problem`) and one runner (:class:`TensorRTEncoder`),
used by the adapters and by export's engine verification alike. GPU buffers come from torch
(CUDA build) when it is installed, else from cuda-python (``pip install cuda-python``), so a
robot can run the engine without torch. Engines are specific to the GPU model and TensorRT
version that built them: rebuild them on the robot with ``vidistill export --trt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vidistill.contract import EncoderContract
from vidistill.errors import CheckpointError

from ..artefacts import contract_for_engine
from ..encoder import Encoder
from ..errors import MissingBackendError

INSTALL_TRT = "pip install tensorrt (`pip install 'vidistill[trt]'`, TensorRT 10) on a machine with an NVIDIA GPU and CUDA"


def tensorrt_problem() -> str | None:
    """Why no engine can run here, or None when TensorRT and a CUDA device are usable."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT is not installed"
    except Exception as e:  # a broken install (missing CUDA libraries) raises OSError & co.
        return f"TensorRT cannot be imported ({type(e).__name__}: {e})"
    try:
        if _TorchBuffers.available() or _CudartBuffers.available():
            return None
    except Exception as e:
        return f"no CUDA device could be queried ({type(e).__name__}: {e})"
    return "no CUDA GPU is visible (through torch or cuda-python)"


def import_tensorrt() -> Any:
    problem = tensorrt_problem()
    if problem:
        raise MissingBackendError(f"the TensorRT backend cannot run here: {problem}: {INSTALL_TRT}")
    import tensorrt

    return tensorrt


class _TorchBuffers:
    """Device memory and stream through torch."""

    @staticmethod
    def available() -> bool:
        try:
            import torch
        except ImportError:
            return False
        return torch.cuda.is_available()

    def __init__(self, device: str) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.stream = torch.cuda.Stream(device=self.device)

    def run(self, context: Any, inputs: dict[str, np.ndarray], outputs: dict[str, tuple[tuple[int, ...], np.dtype]]) -> dict[str, np.ndarray]:
        torch = self.torch
        keep = []
        with torch.cuda.stream(self.stream):
            for name, arr in inputs.items():
                t = torch.from_numpy(arr).to(self.device, non_blocking=True)
                keep.append(t)
                context.set_tensor_address(name, t.data_ptr())
            result = {}
            for name, (shape, dtype) in outputs.items():
                t = torch.empty(shape, dtype=getattr(torch, np.dtype(dtype).name), device=self.device)
                result[name] = t
                context.set_tensor_address(name, t.data_ptr())
            if not context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
        self.stream.synchronize()
        return {k: v.cpu().numpy() for k, v in result.items()}

    def close(self) -> None:
        pass


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


class _CudartBuffers:
    """Device memory and stream through cuda-python (no torch needed)."""

    @staticmethod
    def available() -> bool:
        try:
            cudart = _cudart()
        except ImportError:
            return False
        err, count = cudart.cudaGetDeviceCount()
        return int(err) == 0 and count > 0

    def __init__(self, device: str) -> None:
        self.cudart = _cudart()
        self._check(self.cudart.cudaSetDevice(int(device.split(":", 1)[1]) if ":" in device else 0))
        self.stream = self._check(self.cudart.cudaStreamCreate())
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (pointer, bytes)

    def _check(self, ret: Any) -> Any:
        err, *rest = ret if isinstance(ret, tuple) else (ret,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA runtime error {err}")
        return rest[0] if len(rest) == 1 else rest

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                self._check(self.cudart.cudaFree(ptr))
            ptr = self._check(self.cudart.cudaMalloc(nbytes))
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def run(self, context: Any, inputs: dict[str, np.ndarray], outputs: dict[str, tuple[tuple[int, ...], np.dtype]]) -> dict[str, np.ndarray]:
        rt = self.cudart
        for name, arr in inputs.items():
            arr = np.ascontiguousarray(arr)
            ptr = self._buffer(name, arr.nbytes)
            self._check(rt.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))
            context.set_tensor_address(name, ptr)
        result = {}
        for name, (shape, dtype) in outputs.items():
            host = np.empty(shape, dtype=dtype)
            result[name] = host
            context.set_tensor_address(name, self._buffer(name, host.nbytes))
        if not context.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        for name, host in result.items():
            ptr = self._buffers[name][0]
            self._check(rt.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))
        self._check(rt.cudaStreamSynchronize(self.stream))
        return result

    def close(self) -> None:
        for ptr, _ in self._buffers.values():
            self.cudart.cudaFree(ptr)
        self._buffers.clear()


class TensorRTEncoder(Encoder):
    """A deserialised TensorRT engine with the contract's I/O names and a dynamic batch profile.

    ``contract``: the engine's contract when it is not beside it (export verifies a staged engine).
    """

    backend = "tensorrt"

    def __init__(self, engine_path: str | Path, device: str | None = None, contract: EncoderContract | None = None) -> None:
        trt = import_tensorrt()
        engine_path = Path(engine_path)
        contract = contract or contract_for_engine(engine_path)
        device = device or "cuda"
        if not device.startswith("cuda"):
            raise ValueError(f"the TensorRT backend runs on CUDA only, got device={device!r}")
        self._io: Any = _TorchBuffers(device) if _TorchBuffers.available() else _CudartBuffers(device)
        super().__init__(contract, device, str(engine_path))
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if engine is None:
            raise CheckpointError(
                f"{engine_path}: TensorRT {trt.__version__} cannot deserialise this engine (built for another "
                "GPU or TensorRT version?): rebuild it on this machine from encoder.onnx"
            )
        self._runtime, self._engine = runtime, engine
        self._context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._input = contract.input_name
        self._outputs = list(contract.output_names[:2])
        missing = [n for n in [self._input, *self._outputs] if n not in names]
        if missing:
            raise CheckpointError(f"{engine_path}: engine tensors {names} lack {missing} named by the contract")
        self._in_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._input)))
        self._out_dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in self._outputs}
        static_batch = int(engine.get_tensor_shape(self._input)[0])
        if static_batch > 0:  # an engine built without a dynamic batch: pad chunks to its size
            self._max_batch, self._static = static_batch, True
        else:
            _, _, max_shape = engine.get_tensor_profile_shape(self._input, 0)
            self._max_batch, self._static = int(max_shape[0]), False

    def _run(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cls_parts, tok_parts = [], []
        for start in range(0, len(pixels), self._max_batch):
            chunk = pixels[start : start + self._max_batch].astype(self._in_dtype, copy=False)
            n = len(chunk)
            if self._static and n < self._max_batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self._max_batch - n, axis=0)])
            else:
                self._context.set_input_shape(self._input, tuple(chunk.shape))
            outputs = {name: (tuple(self._context.get_tensor_shape(name)), self._out_dtypes[name]) for name in self._outputs}
            out = self._io.run(self._context, {self._input: np.ascontiguousarray(chunk)}, outputs)
            cls_parts.append(out[self._outputs[0]][:n].astype(np.float32, copy=False))  # fp16 engines: float32 out
            tok_parts.append(out[self._outputs[1]][:n].astype(np.float32, copy=False))
        if len(cls_parts) == 1:
            return cls_parts[0], tok_parts[0]
        return np.concatenate(cls_parts), np.concatenate(tok_parts)

    def close(self) -> None:
        self._io.close()
        self._context = self._engine = None
