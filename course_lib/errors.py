"""Error types shared by the whole course library.

Every error a learner can trigger with bad input is a subclass of :class:`CourseError`,
and its message names the bad thing (file, record, field or shape). Messages are always printable:
a file name that is not valid UTF-8 (which Python holds with surrogate escapes, see
:func:`os.fsdecode`) is shown with ``\\xNN`` escapes (:func:`printable`), so printing or logging
an error never raises ``UnicodeEncodeError``.
"""

from __future__ import annotations

from typing import Any


def printable(text: str) -> str:
    """``text`` safe to print or encode as UTF-8: undecodable bytes shown as ``\\xNN``.

    Args:
        text: any text, e.g. a message naming a file whose name is not valid UTF-8
            (``os.fsdecode(b"bad\\xff.mp4")`` holds the surrogate escape ``\\udcff``).

    Returns:
        ``text`` itself when it has no surrogates, else ``text`` with each surrogate escape
        replaced by the escape of its byte (``bad\\xff.mp4``); any other lone surrogate becomes
        ``\\udXXX``.
    """
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that no file name gives
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


class CourseError(Exception):
    """Base class of every error raised deliberately by course_lib (printable message)."""

    def __init__(self, *args: Any) -> None:
        """Keep ``args``, text arguments made printable (see :func:`printable`)."""
        super().__init__(*(printable(arg) if isinstance(arg, str) else arg for arg in args))


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
