"""``vidistill.export``: checkpoint → teacher backbone → artefacts (safetensors, ONNX, TensorRT).

Modules, one idea each: ``timm_artifact`` (safetensors + timm hub config), ``onnx_export``
(torch → ONNX, simplified, with metadata), ``graph_check`` (static TensorRT-compatibility
check), ``parity`` (served artefact vs PyTorch), ``tensorrt_engine`` (TensorRT 10 build),
``manifest``, ``staging`` (write-then-publish), ``pipeline`` (the whole export) and
``command`` (the CLI). Rebuilding the module at a fixed size, loading and running every
artefact is :mod:`vidistill.runtime`'s: each parity number is measured through the code a
robot runs. Nothing is imported here (the CLI's import stays cheap).
"""
