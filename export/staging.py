"""Write artefacts into a hidden folder inside the output folder, publish them when verified.

Nothing in the output folder is touched until ``publish``: a failed export leaves the user's
files as they were. Publishing is one ``os.replace`` per file (atomic on POSIX, same file
system since the staging folder lives inside the output folder).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def _default_file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _default_file_mode()


class Staging:
    """``with Staging(output) as stage: write to stage.path / name ... stage.publish(names)``."""

    def __init__(self, output: Path):
        self.output = Path(output)
        self.path: Path | None = None

    def __enter__(self) -> Staging:
        self.output.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=".export-", suffix=".tmp", dir=self.output))
        return self

    def file(self, name: str) -> Path:
        assert self.path is not None, "use Staging as a context manager"
        return self.path / name

    def publish(self, names: list[str]) -> list[Path]:
        """Move the named staged files over their namesakes in the output folder."""
        done = []
        for name in names:
            target = self.output / name
            os.chmod(self.file(name), _FILE_MODE)  # some writers (safetensors) leave 0600
            os.replace(self.file(name), target)
            done.append(target)
        return done

    def __exit__(self, *exc) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
