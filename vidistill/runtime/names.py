"""Artefact file names and metadata keys, in one place (pure Python: export, eval and robots read them)."""

SAFETENSORS_NAME = "encoder.safetensors"
CONFIG_NAME = "config.json"
ONNX_NAME = "encoder.onnx"
ENGINE_NAME = "encoder.engine"
MANIFEST_NAME = "manifest.json"
CHECKPOINT_NAME = "checkpoint.pt"
EXPORT_DIR = "export"  # `vidistill export` writes <run folder>/export by default
CONTRACT_KEY = "vidistill"  # config.json key holding the contract
METADATA_KEY = "vidistill.contract"  # ONNX metadata_props key holding the contract JSON
