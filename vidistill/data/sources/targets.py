"""What a robot log records beside its frames (actions, robot state), one value per frame.

A source's :attr:`~vidistill.data.sources.base.VideoSource.targets` is set by its format's
opener when the log records any: LeRobot's numeric feature columns (:mod:`.lerobot`), an HDF5
episode's numeric datasets (:mod:`.hdf5`). Each format reads its own file layout in its own
module; this module holds only the interface they share. Names are the log's own
(``action``, ``observation.state``, ``obs/robot0_eef_pos``); row ``i`` belongs to frame ``i``
of the source (the format aligns them: by frame index, or by the episode's row order).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

# The name each supported log gives its action, in the order looked for (LeRobot and ALOHA:
# "action"; robomimic: "actions").
ACTION_NAMES = ("action", "actions")


class Targets(ABC):
    """The per-frame values one episode of a log records beside its frames."""

    file: str  # the file they are read from (error messages name it)

    @abstractmethod
    def names(self) -> list[str]:
        """Every target this episode records, by the log's own names."""

    @abstractmethod
    def read(self, name: str) -> np.ndarray:
        """Target ``name`` as float64 (rows, dims): row ``i`` belongs to frame ``i``. Raises
        ``VideoError`` naming the file when it cannot be read (``KeyError`` for an unknown name)."""

    def action_name(self) -> str | None:
        """The log's action (its own name for it), or None when it records none."""
        have = self.names()
        return next((n for n in ACTION_NAMES if n in have), None)


def as_rows(values: np.ndarray) -> np.ndarray:
    """(T,) or (T, ...) numbers -> float64 (T, dims)."""
    values = np.asarray(values, dtype=np.float64)
    return values.reshape(len(values), -1) if values.ndim != 1 else values[:, None]
