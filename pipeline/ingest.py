"""Ingest: run a reader over many files and write the canonical table and its quarantine.

``write_ingest`` writes, under one output URL (local path or ``s3://…``):

- ``<table>.parquet/``: the canonical table (``particles`` or ``objects``), one parquet
  part per input file;
- ``quarantine.parquet/``: every refused row (file, line, column, reason, raw line);
- ``files.parquet``: one row per input file (rows read / accepted / quarantined);
- ``summary.json``: the counts, by reason, that the CLI prints.

Accepted rows, quarantine and counts come from the same per-file tasks, computed in
one pass (each file is parsed once). :func:`write_quarantine` is the one way a quarantine
is written, here and by the targets step of a run (``OUT/quarantine/<table>.parquet``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import dask
import pandas as pd

from pipeline.io import OutputStore, as_store
from pipeline.sources.table import ReadResult

__all__ = ["IngestSummary", "summarize", "write_ingest", "write_quarantine"]

logger = logging.getLogger(__name__)

#: Coordinates whose range the summary reports, when the table has them.
_EXTENT_COLUMNS = ("lat", "lon", "time", "depth_m", "depth_min_m", "depth_max_m")


@dataclass(frozen=True)
class IngestSummary:
    """Counts of one ingest run.

    Attributes
    ----------
    table : str
        Name of the canonical table written.
    files : int
        Input files.
    rows_read, rows_accepted, rows_quarantined : int
        Data rows; ``rows_read == rows_accepted + rows_quarantined``.
    files_failed : int
        Files that could not be read at all (one ``line = 0`` quarantine row each).
    by_reason : dict of str to int
        Quarantined rows per (column: reason), most frequent first.
    outputs : dict of str to str
        URLs written.
    extents : dict of str to (str, str)
        Minimum and maximum of the accepted rows' coordinates (``lat``, ``lon``,
        ``time``, depth), as text.
    """

    table: str
    files: int
    rows_read: int
    rows_accepted: int
    rows_quarantined: int
    files_failed: int
    by_reason: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    extents: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def reconciles(self) -> bool:
        """True when read = accepted + quarantined."""
        return self.rows_read == self.rows_accepted + self.rows_quarantined

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-serialisable)."""
        return {**asdict(self), "reconciles": self.reconciles}


def summarize(
    table: str,
    stats: pd.DataFrame,
    quarantine: pd.DataFrame,
    outputs: Mapping[str, str] | None = None,
) -> IngestSummary:
    """Summarise per-file counts and the quarantine of a read.

    Parameters
    ----------
    table : str
        Name of the canonical table.
    stats : pandas.DataFrame
        Per-file counts (``ReadResult.stats`` computed).
    quarantine : pandas.DataFrame
        The quarantine (``ReadResult.quarantine`` computed).
    outputs : mapping, optional
        URLs written, reported as is.

    Returns
    -------
    IngestSummary
        Totals and counts by reason.

    Examples
    --------
    >>> stats = pd.DataFrame({"file": ["a"], "rows_read": [3], "rows_accepted": [2],
    ...                       "rows_quarantined": [1]})
    >>> q = pd.DataFrame({"file": ["a"], "line": [4], "column": ["lat"],
    ...                   "reason": ["latitude 95.0 out of [-90, 90]"], "raw": [""]})
    >>> s = summarize("particles", stats, q)
    >>> s.rows_read, s.reconciles, s.by_reason
    (3, True, {'lat: latitude 95.0 out of [-90, 90]': 1})
    """
    labels = quarantine["column"].where(quarantine["column"] != "", "file")
    keys = (labels + ": " + quarantine["reason"].str.slice(0, 120)).value_counts()
    return IngestSummary(
        table=table,
        files=len(stats),
        rows_read=int(stats["rows_read"].sum()),
        rows_accepted=int(stats["rows_accepted"].sum()),
        rows_quarantined=int(stats["rows_quarantined"].sum()),
        files_failed=int(quarantine.loc[quarantine["line"] == 0, "file"].nunique()),
        by_reason={str(k): int(v) for k, v in keys.items()},
        outputs=dict(outputs or {}),
    )


def write_quarantine(result: ReadResult, out: str | OutputStore, name: str) -> Any:
    """Return the lazy write of a reader's quarantine as a parquet folder.

    One part file per input file (the reader's partitions), each row ``file, line,
    column, reason, raw``. Compute it together with the accepted rows and the counts, so
    each file is parsed once.

    Parameters
    ----------
    result : ReadResult
        Lazy accepted rows, quarantine and per-file counts of a reader.
    out : str or OutputStore
        Output folder (local path or fsspec URL) or store.
    name : str
        Folder name in the store (``"quarantine.parquet"``,
        ``"quarantine/particles.parquet"``).

    Returns
    -------
    dask collection
        Compute it (``dask.compute``) to write.

    See Also
    --------
    write_ingest : writes the accepted rows, this quarantine, the per-file counts and a
        summary.
    """
    return as_store(out).write_parquet_dataset(name, result.quarantine)


def write_ingest(
    result: ReadResult,
    out: str | OutputStore,
    *,
    table: str,
    storage_options: Mapping[str, Any] | None = None,
    compute: Callable[..., tuple[Any, ...]] = dask.compute,
) -> IngestSummary:
    """Write a reader's result under ``out`` and return its summary.

    Parameters
    ----------
    result : ReadResult
        Lazy accepted rows, quarantine and per-file counts.
    out : str or OutputStore
        Output folder URL (local path or ``s3://bucket/prefix``) or store.
    table : str
        Name of the canonical table (``particles``, ``objects``).
    storage_options : mapping, optional
        Passed to fsspec/s3fs for the output when ``out`` is a URL.
    compute : callable
        Computes several dask collections at once (``dask.compute`` by default; the CLI
        passes one that shows a progress bar).

    Returns
    -------
    IngestSummary
        Counts (reconciled), by reason, and the URLs written.
    """
    store = as_store(out, storage_options=storage_options)
    names = {
        table: f"{table}.parquet",
        "quarantine": "quarantine.parquet",
        "files": "files.parquet",
        "summary": "summary.json",
    }
    urls = {key: store.path(name) for key, name in names.items()}
    store.makedirs()
    write_table = store.write_parquet_dataset(names[table], result.accepted)
    write_quarantined = write_quarantine(result, store, names["quarantine"])
    coords = [c for c in _EXTENT_COLUMNS if c in result.accepted.columns]
    logger.info("ingest: %d file(s) into %s", result.stats.npartitions, urls[table])
    _, _, stats, quarantine, lows, highs = compute(
        write_table,
        write_quarantined,
        result.stats,
        result.quarantine,
        result.accepted[coords].min(),
        result.accepted[coords].max(),
    )
    store.write_parquet(names["files"], stats)
    summary = summarize(table, stats, quarantine, urls)
    summary = replace(
        summary, extents={c: (str(lows[c]), str(highs[c])) for c in coords if pd.notna(lows[c])}
    )
    store.write_json(names["summary"], summary.to_dict(), indent=2, newline=False)
    return summary
