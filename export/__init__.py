"""``vidistill.export``: checkpoint → teacher backbone → artefacts (safetensors, ONNX, TensorRT).

Modules, one idea each: ``encoder`` (the fixed-size export module), ``timm_artifact``
(safetensors + timm config), ``onnx_export`` (torch → ONNX, simplified, with metadata),
``graph_check`` (static TensorRT-compatibility check), ``parity`` (artefact vs PyTorch),
``runtime`` (ONNX Runtime sessions; no torch), ``tensorrt_engine`` (TensorRT 10 build/run),
``manifest``, ``staging`` (write-then-publish), ``pipeline`` (the whole export) and
``command`` (the CLI). Nothing is imported here so that ``vidistill.export.runtime`` stays
importable without torch.
"""
