"""User-facing errors: the CLI prints their message (no traceback) and exits non-zero."""


class VidistillError(Exception):
    """A problem with the user's input (path, video, checkpoint, config) with a clear message."""

    exit_code = 2


class VideoError(VidistillError):
    """A video source that cannot be used: missing, empty, unreadable, too short."""


class CheckpointError(VidistillError):
    """A checkpoint or artefact that is not ours, is truncated, or does not match."""


class TrainingError(VidistillError):
    """Training cannot go on (non-finite loss, collapse with stop requested)."""

    exit_code = 3
