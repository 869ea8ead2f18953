"""LeRobot datasets (``meta/info.json``): one source per episode x camera. (Reader: step 3.)"""

from __future__ import annotations

from pathlib import Path

from vidistill.data.sources.base import Format, Opened, OpenOptions
from vidistill.errors import VideoError

INFO = Path("meta") / "info.json"


def _claims(path: Path) -> bool:
    return path.is_dir() and (path / "meta").is_dir() and (
        (path / INFO).exists() or (path / "videos").is_dir() or (path / "data").is_dir()
    )


def _open(path: Path, name: str, options: OpenOptions) -> Opened:
    raise VideoError(f"{path}: LeRobot datasets are not readable yet")


FORMAT = Format("lerobot", "a LeRobot dataset (meta/info.json)", _claims, _open)
