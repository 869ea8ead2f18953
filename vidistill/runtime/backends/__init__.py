"""One module per backend, each an :class:`~vidistill.runtime.encoder.Encoder`: ``torch``,
``onnx`` (ONNX Runtime) and ``tensorrt`` (its availability probe too). Chosen by
:func:`vidistill.runtime.loader.load_encoder`; a backend's module is imported only when used."""
