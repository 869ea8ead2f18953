"""Names and defaults of the export, in one place (no heavy imports: the CLI reads them)."""

SAFETENSORS_NAME = "encoder.safetensors"
CONFIG_NAME = "config.json"
ONNX_NAME = "encoder.onnx"
ENGINE_NAME = "encoder.engine"
MANIFEST_NAME = "manifest.json"
CONTRACT_KEY = "vidistill"  # config.json key holding the contract
METADATA_KEY = "vidistill.contract"  # ONNX metadata_props key holding the contract JSON

DEFAULT_OPSET = 18  # the dynamo exporter's native opset; TensorRT 10 parses 9..20
MIN_OPSET = 17  # LayerNormalization is one op from opset 17
EXPORTERS = ("auto", "dynamo", "legacy")
PRECISIONS = ("fp16", "bf16", "fp32")  # TensorRT engine precision (the ONNX file is fp32)
DEFAULT_MAX_BATCH = 32

PARITY_BATCHES = (1, 3, 8)
ORT_ATOL = 1e-4  # fp32 ONNX Runtime vs torch, max abs diff (others report 1e-6..1e-4)
TRT_MIN_COSINE = 0.999  # reduced-precision engine vs torch, per patch token (GR00T's bar)
