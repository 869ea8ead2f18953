"""Names and defaults of the export, in one place (no heavy imports: the CLI reads them)."""

from vidistill.runtime.names import (  # noqa: F401  (the artefact names live in the runtime)
    CONFIG_NAME,
    CONTRACT_KEY,
    ENGINE_NAME,
    MANIFEST_NAME,
    METADATA_KEY,
    ONNX_NAME,
    SAFETENSORS_NAME,
)
from vidistill.runtime.ort import DEFAULT_MAX_BATCH  # noqa: F401

DEFAULT_OPSET = 18  # the dynamo exporter's native opset; TensorRT 10 parses 9..20
MIN_OPSET = 17  # LayerNormalization is one op from opset 17
EXPORTERS = ("auto", "dynamo", "legacy")
PRECISIONS = ("fp16", "bf16", "fp32")  # TensorRT engine precision (the ONNX file is fp32)

PARITY_BATCHES = (1, 3, 8)
ORT_ATOL = 1e-4  # fp32 ONNX Runtime vs torch, max abs diff (others report 1e-6..1e-4)
TRT_MIN_COSINE = 0.999  # reduced-precision engine vs torch, per patch token (GR00T's bar)
