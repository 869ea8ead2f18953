"""A package's public names, imported on first use (PEP 562 module ``__getattr__``/``__dir__``).

``vidistill.runtime``, ``vidistill.data`` and ``vidistill.robot_adapters`` list their names here
so that importing the package costs nothing: torch, cv2 and onnxruntime load only with the
module that needs them (a robot running an ONNX artefact has no torch). Imports nothing heavy,
not even ``typing``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(
    namespace: dict[str, object], exports: dict[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of the package whose ``globals()`` is ``namespace``.

    ``exports`` maps each public name to the submodule (relative to the package) that defines it.
    A name is imported once, then kept in ``namespace`` so later lookups skip ``__getattr__``.
    """
    package = namespace["__name__"]

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
