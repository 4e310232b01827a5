"""One error hierarchy for oceanfields.

Every error says where (file or URL, line, column or variable), what was found, what
was expected, and what to do. Bad *rows* in data are not raised but quarantined with
the same fields (see :mod:`pipeline.sources.table`).
"""

from __future__ import annotations

__all__ = ["ConfigError", "InputFormatError", "OceanfieldsError", "StoreMismatchError"]


class OceanfieldsError(Exception):
    """Base class of every error raised on purpose by oceanfields."""


class ConfigError(OceanfieldsError, ValueError):
    """A configuration, catalog or cluster file is invalid (names the file and key).

    Parameters
    ----------
    message : str
        The whole message: where, the value found, what is expected, the fix.
    key : str, optional
        The dotted key the message starts with (``"split.n_folds"``, or ``"n_workers"``
        relative to its section), set by :func:`pipeline.config.config_error`;
        :func:`pipeline.config.build_config` uses it to prefix the file and section.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class InputFormatError(OceanfieldsError, ValueError):
    """An input file cannot be read as the format it claims to be (names file and line)."""


class StoreMismatchError(OceanfieldsError, ValueError):
    """An existing fields store differs from the fields to write (names what differs)."""
