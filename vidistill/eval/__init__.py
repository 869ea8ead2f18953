"""Probes on frozen features; reads checkpoints (the teacher) or artefacts through the runtime.

- ``features``: the runtime's :func:`load_encoder` (checkpoint / run folder / export folder, any
  backend) -> :class:`Encoder` that extracts ([CLS], patch tokens) in batches with the
  contract's preprocessing; images and label maps brought to the input aspect by its rule.
- ``probe``: linear heads on cached feature maps (segmentation Fast-LP, log-depth).
- ``knn``: DINO's weighted k-NN on [CLS] features.
- ``metrics``: confusion-matrix mIoU, depth errors.
- ``datasets``: the ADE20K layout (+ ``depth/``) and the image-folder layout.
- ``tasks``: dataset -> features -> fit -> JSON report; ``command``: ``vidistill eval``.
"""
