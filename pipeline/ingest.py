"""Ingest: run a reader over many files and write the canonical table and its quarantine.

``write_ingest`` writes, under one output URL (local path or ``s3://…``):

- ``<table>.parquet/``: the canonical table (``particles`` or ``objects``), one parquet
  part per batch of input files (``part-<batch>.parquet``);
- ``quarantine.parquet/``: every refused row (file, line, column, reason, raw line);
- ``files.parquet/``: one row per input file (rows read / accepted / quarantined), a
  parquet dataset beside the table (read it with ``dask.dataframe.read_parquet``);
- ``inventory.parquet``: every file found in the inputs and what was done with it
  (read, metadata, not read by this reader, unknown);
- ``_state/ingest/<batch>.json``: one marker per batch written (resume);
- ``summary.json``: the counts, by reason, that the CLI prints.

Accepted rows, quarantine and counts of a batch come from one task and are written by the
task after it on the same worker (each file is parsed once, the client holds no table).
:func:`write_quarantine` is the one way a quarantine
is written, here and by the targets step of a run (``OUT/quarantine/<table>.parquet``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import dask
import pandas as pd

from pipeline.errors import InputFormatError
from pipeline.sources.table import Batch, ReadResult, batch_tasks
from pipeline.store import OutputStore, as_store

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
    not_read : dict of str to int
        Files found but not read, per ``"kind (action)"`` (``"ZOO export (not read by
        this reader)"``, ``"unknown (unknown: not read)"``, the metadata summary used);
        listed one by one in ``inventory.parquet``.
    batches, batches_written : int
        Batches of files in the read, and those written by this run (the others were
        already written by an earlier, interrupted run).
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
    not_read: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    batches_written: int = 0

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
    resume: bool = True,
) -> IngestSummary:
    """Write a reader's result under ``out``, batch by batch from the workers.

    Each batch of files (:func:`pipeline.sources.table.read_many`) is parsed and written
    by the same worker: its accepted rows, quarantine and per-file counts go to
    ``<table>.parquet/part-<batch>.parquet``, ``quarantine.parquet/…`` and
    ``files.parquet/…``, each file whole or not at all, then a marker
    ``_state/ingest/<batch>.json`` with the batch's counts. The client only gathers these
    few counts per batch (never a table, nor anything per file). With ``resume`` (the
    default), batches whose marker exists (the same files, sizes and reader options) are
    not read again: a killed ingest re-run writes only the missing batches. Parts and
    markers of batches that are not in this read (another input) are removed.

    Partitioned by batch, not by year/month: a batch is the unit of work and of resume,
    and holds whole files, hence whole profiles (what the targets step groups by);
    partitions by month would need a shuffle of every batch and lose both.

    Parameters
    ----------
    result : ReadResult
        Lazy accepted rows, quarantine and per-file counts, with their ``batches``.
    out : str or OutputStore
        Output folder URL (local path or ``s3://bucket/prefix``) or store.
    table : str
        Name of the canonical table (``particles``, ``objects``).
    storage_options : mapping, optional
        Passed to fsspec/s3fs for the output when ``out`` is a URL.
    compute : callable
        Computes several dask collections at once (``dask.compute`` by default; the CLI
        passes one that shows a progress bar).
    resume : bool
        Skip batches already written by an earlier run with the same inputs.

    Returns
    -------
    IngestSummary
        Counts (reconciled), by reason, the files not read, the batches written and
        skipped, and the URLs written.

    Raises
    ------
    InputFormatError
        When ``result`` has no batches (not made by :func:`~pipeline.sources.table.read_many`).
    """
    if not result.batches:
        raise InputFormatError(
            "write_ingest: the read has no batches (ReadResult.batches); read the files with a "
            "reader of pipeline.sources (they batch them through read_many)."
        )
    store = as_store(out, storage_options=storage_options)
    folders = {
        table: f"{table}.parquet",
        "quarantine": "quarantine.parquet",
        "files": "files.parquet",
    }
    urls = {key: store.path(name) for key, name in folders.items()}
    urls.update(summary=store.path("summary.json"))
    store.makedirs()
    names = [b.name for b in result.batches]
    done = {n.removesuffix(".json") for n in store.listdir(_STATE)} if resume else set()
    coords = [c for c in _EXTENT_COLUMNS if c in result.accepted.columns]
    todo = [b for b in result.batches if b.name not in done]
    logger.info(
        "ingest: %d batch(es) into %s, %d already written",
        len(names),
        urls[table],
        len(names) - len(todo),
    )
    # one task per batch; the read's shared metadata is one key they all depend on
    writes = batch_tasks(
        todo, _write_batch, store, folders, table, coords, prefix="ingest-batch", pure=False
    )
    written = list(compute(*writes)) if writes else []
    counts = {c["name"]: c for c in written}
    for name in names:
        if name not in counts:
            counts[name] = store.read_json(f"{_STATE}/{name}.json")
    _remove_stale(store, names, folders)
    inventory = result.inventory
    if inventory is not None:
        store.write_parquet("inventory.parquet", inventory)
        urls["inventory"] = store.path("inventory.parquet")
    summary = _combine(table, [counts[n] for n in names], urls, inventory)
    summary = replace(summary, batches=len(names), batches_written=len(written))
    store.write_json("summary.json", summary.to_dict(), indent=2, newline=False)
    return summary


#: Where the markers of the batches written live, in the output folder.
_STATE = "_state/ingest"


def _write_batch(
    batch: Batch,
    shared: Mapping[str, Any] | None,
    store: OutputStore,
    folders: Mapping[str, str],
    table: str,
    coords: list[str],
) -> dict[str, Any]:
    """Read one batch, write its three tables, then its marker; return its counts.

    Runs on a worker, as one task: the tables never leave it.
    """
    name = batch.name
    accepted, quarantine, stats = batch.read(shared)
    file = f"part-{name}.parquet"
    store.write_parquet(f"{folders[table]}/{file}", accepted.reset_index(drop=True))
    store.write_parquet(f"{folders['quarantine']}/{file}", quarantine.reset_index(drop=True))
    store.write_parquet(f"{folders['files']}/{file}", stats.reset_index(drop=True))
    labels = quarantine["column"].where(quarantine["column"] != "", "file")
    keys = (labels + ": " + quarantine["reason"].str.slice(0, 120)).value_counts()
    extents: dict[str, list[Any]] = {}
    for c in coords:
        values = accepted[c].dropna()
        if len(values):
            low, high = values.min(), values.max()
            extents[c] = [_plain(low), _plain(high)]
    counts = {
        "name": name,
        "files": len(stats) - int(batch.continues),
        "rows_read": int(stats["rows_read"].sum()),
        "rows_accepted": int(stats["rows_accepted"].sum()),
        "rows_quarantined": int(stats["rows_quarantined"].sum()),
        "files_failed": int(quarantine.loc[quarantine["line"] == 0, "file"].nunique()),
        "by_reason": {str(k): int(v) for k, v in keys.items()},
        "extents": extents,
    }
    store.write_json(f"{_STATE}/{name}.json", counts)
    return counts


def _plain(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return float(value)


def _remove_stale(store: OutputStore, names: list[str], folders: Mapping[str, str]) -> None:
    """Remove parts and markers that belong to no batch of this read."""
    keep_parts = {f"part-{n}.parquet" for n in names}
    for folder in folders.values():
        for entry in store.listdir(folder):
            if entry not in keep_parts:
                store.remove(f"{folder}/{entry}")
    keep_markers = {f"{n}.json" for n in names}
    for entry in store.listdir(_STATE):
        if entry not in keep_markers:
            store.remove(f"{_STATE}/{entry}")


def _combine(
    table: str,
    batches: list[dict[str, Any]],
    outputs: Mapping[str, str],
    inventory: pd.DataFrame | None,
) -> IngestSummary:
    """Add up the counts of the batches (and list the files not read)."""
    by_reason: Counter[str] = Counter()
    lows: dict[str, Any] = {}
    highs: dict[str, Any] = {}
    for b in batches:
        by_reason.update(b["by_reason"])
        for c, (low, high) in b["extents"].items():
            lows[c] = low if c not in lows else min(lows[c], low)
            highs[c] = high if c not in highs else max(highs[c], high)
    not_read: dict[str, int] = {}
    if inventory is not None and len(inventory):
        other = inventory[inventory["action"] != "read"]
        for (kind, action), n in other.groupby(["kind", "action"]).size().items():
            not_read[f"{kind} ({action})"] = int(n)
    return IngestSummary(
        table=table,
        files=sum(b["files"] for b in batches),
        rows_read=sum(b["rows_read"] for b in batches),
        rows_accepted=sum(b["rows_accepted"] for b in batches),
        rows_quarantined=sum(b["rows_quarantined"] for b in batches),
        files_failed=sum(b["files_failed"] for b in batches),
        by_reason=dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
        outputs=dict(outputs),
        extents={c: (_shown(lows[c]), _shown(highs[c])) for c in lows},
        not_read=not_read,
    )


def _shown(value: Any) -> str:
    return str(pd.Timestamp(value)) if isinstance(value, str) else str(value)
