"""Error types shared by the whole course library.

Every error a learner can trigger with bad input is a subclass of :class:`CourseError`,
and its message names the bad thing (file, record, field or shape).
"""


class CourseError(Exception):
    """Base class of every error raised deliberately by course_lib."""


class VideoReadError(CourseError):
    """A video file is missing, unreadable, truncated, has no video stream or no frames."""


class DataValidationError(CourseError, ValueError):
    """A dataset record or feature file breaks the expected format (names record and field)."""


class MetricInputError(CourseError, ValueError):
    """Predictions or ground truth given to a metric are malformed."""


class CheckpointError(CourseError):
    """A checkpoint is missing, corrupted (checksum mismatch) or incompatible."""


class OfflineError(CourseError):
    """Something must be downloaded but the machine is offline; says what to fetch by hand."""


class NotebookFormatError(CourseError, ValueError):
    """A solution notebook has malformed exercise markers (names notebook and cell)."""


class LockTimeoutError(CourseError, TimeoutError):
    """A folder stayed locked by another process past the timeout (names folder and holder).

    Attributes:
        folder: the locked folder.
        holder: who holds the lock, e.g. ``"process 1234 on myhost"``.
    """

    def __init__(self, message: str, folder=None, holder: str | None = None) -> None:
        super().__init__(message)
        self.folder = folder
        self.holder = holder
