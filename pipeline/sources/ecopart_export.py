"""EcoPart detailed and reduced PAR exports into the canonical particles table.

The sub-step of the EcoPart reader (:mod:`pipeline.sources.ecopart`) for
``*_PAR_<profile>.tsv`` and ``*_PAR_Aggregated.tsv`` files: :func:`read_par_export`
(concentrations x volume -> counts, with the time-organised and duplicate-bin checks) and
its careful per-file parser. The table's columns and the class sets are in
:mod:`pipeline.sources.ecopart_classes` (:func:`particles_meta` is also here); clean files,
a batch at once, take the fast path of :mod:`pipeline.sources.ecopart_clean`. The choices
made are listed in :mod:`pipeline.sources.ecopart`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline import sizeclasses
from pipeline.errors import InputFormatError
from pipeline.io import read_bytes
from pipeline.sources.archive import ArchiveFile
from pipeline.sources.ecopart_classes import (
    _DEPTH,
    _VOLUME,
    SizeClasses,
    _class_set,
    _count_columns,
    _round_counts,
    particles_meta,
)
from pipeline.sources.ecopart_clean import _parse_clean_par_batch, _read_clean
from pipeline.sources.ecopart_summary import (
    CRUISE_OF_PARTICLES,
    PAR_EXPORT,
    _flag_values,
    _load_summary,
    _mark_used,
    _missing_profile_reason,
    _particles_cruise,
    _show_columns,
    _sort_files,
)
from pipeline.sources.table import (
    QUARANTINE_META,
    FileResult,
    ReadResult,
    RowChecker,
    read_many,
    to_float,
    tokenize,
)

__all__ = ["particles_meta", "read_par_export"]

# One logger for the whole EcoPart reader: its name, "pipeline.sources.ecopart", is the
# one callers filter on.
logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------- PAR exports


def read_par_export(
    urls: str | Sequence[str] | Sequence[ArchiveFile],
    *,
    metadata_url: str | None = None,
    size_classes: SizeClasses | None = None,
    storage_options: Mapping[str, Any] | None = None,
    encoding: str | None = None,
    batch_bytes: int | None = None,
) -> ReadResult:
    """Read EcoPart detailed or reduced PAR exports into the particles table, lazily.

    One file per profile (``*_PAR_<profile>.tsv``) or ``*_PAR_Aggregated.tsv`` (with a
    ``Project`` column); ``Profile`` or lower-case ``profile``. Counts are
    concentration x ``Sampled volume [L]``, rounded to the nearest integer when within
    10^-6 (relative), kept as floats otherwise.

    Parameters
    ----------
    urls : str or sequence of str
        Files, folders, glob patterns, ``.zip`` archives (zips of zips) or ``s3://``
        prefixes (:func:`pipeline.sources.archive.list_files`): files found in folders,
        globs and archives are read when their name is a PAR export's, the others listed
        in ``inventory``; files named as they are are always read. Batched by
        :func:`~pipeline.sources.table.read_many`.
    metadata_url : str, optional
        The export's ``*_Export_metadata_summary.tsv``; by default the one found among the
        inputs or in the folder of the first file (same export time stamp preferred).
    size_classes : {"detailed", "reduced"}, optional
        Class set of the output; by default detected from the first file's header (45
        classes: detailed, 15: reduced). A file of the other set is quarantined whole.
    storage_options : mapping, optional
        Passed to fsspec.
    encoding : str, optional
        ``None`` (default) detects UTF-8 or latin-1 per file; an explicit encoding is
        strict (undecodable lines are quarantined).
    batch_bytes : int, optional
        Input bytes per task, at most (default
        :data:`~pipeline.sources.table.BATCH_BYTES`); see
        :func:`~pipeline.sources.table.plan_batches`.

    Returns
    -------
    ReadResult
        Lazy ``accepted`` (:func:`particles_meta` columns), ``quarantine`` and ``stats``.
        Quarantined: text or missing depth or volume, volume <= 0, negative or text
        concentrations, depths off the 5 m bin centres, duplicate (profile, depth bin)
        rows (the first is kept), profiles absent from (or refused by) the summary,
        time-organised samples, malformed lines; a file missing a required column has
        all its rows quarantined naming it.

    Raises
    ------
    InputFormatError
        When no file is given, or the metadata summary cannot be found or read.

    See Also
    --------
    read_par_raw : the same table from raw exports.
    read_ecopart : dispatch by file name.
    """
    files, found, inventory = _sort_files(urls, storage_options, (PAR_EXPORT,))
    if not files:
        raise InputFormatError(
            "read_par_export: no PAR export file among the inputs "
            f"({len(inventory)} file(s) found: {_kinds(inventory)})."
        )
    urls = [f.url for f in files]
    summary_url, summary, bad = _load_summary(
        urls, metadata_url, storage_options, encoding, "detailed/reduced", found
    )
    if size_classes is None:
        size_classes = _sniff_size_classes(urls, storage_options=storage_options)
    elif size_classes not in ("detailed", "reduced"):
        raise InputFormatError(
            f"size_classes={size_classes!r} is not a class set; valid: 'detailed', 'reduced'."
        )
    options = {
        "size_classes": size_classes,
        "storage_options": dict(storage_options) if storage_options else None,
        "encoding": encoding,
    }
    parse = functools.partial(_parse_par_export, **options)
    # clean files: a batch at once (ecopart_clean); the others, and those, file by file
    bulk = functools.partial(_parse_clean_par_batch, **options)
    # the summary: one copy in the graph, whatever the number of batches, and only the
    # columns the parse reads (all of them: 9.1 MB of graph for 30,000 profiles)
    summary = summary[["lat", "lon", "time", "organized_by_depth", CRUISE_OF_PARTICLES]]
    shared = {"summary": summary, "bad_profiles": bad, "summary_url": summary_url}
    meta = particles_meta(size_classes)
    result = read_many(files, parse, meta, batch_bytes=batch_bytes, shared=shared, parse_bulk=bulk)
    result.inventory = _mark_used(inventory, summary_url)
    return result


def _kinds(inventory: pd.DataFrame) -> str:
    counts = inventory["kind"].value_counts()
    return ", ".join(f"{n} {k}" for k, n in counts.items()) or "none"


def _sniff_size_classes(
    urls: Sequence[str], *, storage_options: Mapping[str, Any] | None
) -> SizeClasses:
    for url in urls:
        try:
            line = read_bytes(url, storage_options=storage_options, first_line=True)
        except InputFormatError:
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            text = line.decode("latin-1")
        kind, _ = _class_set([h.strip() for h in text.rstrip("\r\n").split("\t")])
        if kind is not None:
            logger.info("size classes detected from %s: %s", url, kind)
            return kind
    logger.warning("no PAR class header found in %d file(s); assuming 'detailed'", len(urls))
    return "detailed"


def _parse_par_export(
    url: str,
    *,
    summary: pd.DataFrame,
    bad_profiles: Mapping[str, str],
    summary_url: str,
    size_classes: SizeClasses,
    storage_options: Mapping[str, Any] | None = None,
    encoding: str | None = None,
) -> FileResult:
    """Parse one detailed/reduced PAR export file (module level: picklable)."""
    data = read_bytes(url, storage_options=storage_options)
    fast = _read_clean([data], summary, size_classes, encoding)
    if fast.done[0]:
        return FileResult(
            url, fast.accepted, QUARANTINE_META.iloc[:0], rows_read=len(fast.accepted)
        )
    raw = tokenize(data, url, encoding=encoding)
    kind, class_index = _class_set(raw.header)
    if kind is None:
        raise InputFormatError(
            f"{url}:1: no complete set of 'LPM (...) [# l-1]' class columns (45 detailed or "
            f"15 reduced); columns found: {_show_columns(raw.header)}. Only EcoPart PAR "
            "exports are read here (not ZOO, CTD or ODV files)."
        )
    if kind != size_classes:
        raise InputFormatError(
            f"{url}:1: {kind} size classes, while this read uses {size_classes}; read the "
            f"{kind} files separately (size_classes={kind!r})."
        )
    cells = raw.cells
    check = RowChecker(raw)
    profile_col = next((c for c in ("Profile", "profile") if c in raw.header), "Profile")
    missing = [c for c in (profile_col, _DEPTH, _VOLUME) if c not in raw.header]
    if missing:
        for col in missing:
            check.flag_all(
                col,
                f"required column {col!r} is missing; columns found: "
                f"{_show_columns(raw.header, 8)}. Re-export the PAR file from EcoPart.",
            )
        logger.warning("%s: required column(s) %s missing; every row quarantined", url, missing)
        return check.result(pd.DataFrame(index=range(len(cells))))

    profile = cells[profile_col].astype(str).str.strip()
    check.flag(profile.to_numpy() == "", profile_col, "empty profile id")
    unknown = (summary.index.get_indexer(profile.to_numpy()) < 0) & (profile.to_numpy() != "")
    if unknown.any():
        reasons = np.full(len(cells), "", dtype=object)
        for i in np.flatnonzero(unknown):
            reasons[i] = _missing_profile_reason(profile.iat[i], summary_url, bad_profiles)
        check.flag(unknown, profile_col, reasons)

    depth, bad = to_float(cells[_DEPTH])
    _flag_values(check, bad, cells, _DEPTH, "not a number: {v!r} (metres expected)", profile)
    _flag_values(check, np.isnan(depth), cells, _DEPTH, "missing depth", profile)
    _flag_values(check, depth < 0, cells, _DEPTH, "negative depth {v!r}", profile)
    _flag_time_organised(check, cells, profile, depth, summary)

    volume, bad = to_float(cells[_VOLUME])
    _flag_values(check, bad, cells, _VOLUME, "not a number: {v!r} (litres expected)", profile)
    _flag_values(check, np.isnan(volume), cells, _VOLUME, "missing sampled volume", profile)
    _flag_values(check, volume <= 0, cells, _VOLUME, "sampled volume {v!r} is not > 0", profile)

    count_names = _count_columns(size_classes)
    counts = np.full((len(cells), len(count_names)), np.nan)
    concs, bads = to_float(cells[list(class_index)])
    for j, (col, i) in enumerate(class_index.items()):
        conc, bad = concs[:, j], bads[:, j]
        _flag_values(check, bad, cells, col, "not a number: {v!r} (# l-1 expected)", profile)
        _flag_values(check, conc < 0, cells, col, "negative concentration {v!r}", profile)
        counts[:, i] = conc
    counts *= volume[:, None]
    _round_counts(counts)

    bins = sizeclasses.depth_bin_centre(depth)
    _flag_duplicates(check, cells, profile, bins, _DEPTH, "depth bin")

    info = summary.reindex(profile.to_numpy()).reset_index(drop=True)
    table = pd.DataFrame(
        {
            "profile_id": profile.to_numpy(),
            "lat": info["lat"],
            "lon": info["lon"],
            "time": info["time"],
            "depth_m": depth,
            "volume_l": volume,
            "cruise": _particles_cruise(summary).reindex(profile.to_numpy()).to_numpy(),
        }
    )
    table = pd.concat([table, pd.DataFrame(counts, columns=count_names)], axis=1)
    res = check.result(table)
    logger.debug(
        "%s: %d row(s) accepted, %d quarantined", url, len(res.accepted), len(res.quarantine)
    )
    return res


def _flag_time_organised(
    check: RowChecker,
    cells: pd.DataFrame,
    profile: pd.Series,
    depth: np.ndarray,
    summary: pd.DataFrame,
) -> None:
    """Refuse time-organised samples whole, and single rows off the 5 m bin centres."""
    off = np.abs(depth - sizeclasses.depth_bin_centre(depth)) > 1e-6
    valid = ~check.refused
    frame = pd.DataFrame({"p": profile.to_numpy(), "off": off})[valid]
    share_off = frame.groupby("p")["off"].mean()
    declared = summary["organized_by_depth"].eq(False).fillna(False).to_numpy(dtype=bool)
    timed = set(share_off.index[share_off > 0.5]) | set(summary.index[declared])
    is_timed = np.fromiter((p in timed for p in profile.to_numpy()), bool, len(profile))
    check.flag(
        is_timed,
        _DEPTH,
        "time-organised sample (organizedbydeepth False: depths are not 5 m bin centres); "
        "it has no depth bins and is not part of the particles table",
    )
    _flag_values(
        check, off, cells, _DEPTH, "depth {v!r} is not a 5 m bin centre (2.5, 7.5, ...)", profile
    )


def _flag_duplicates(
    check: RowChecker,
    cells: pd.DataFrame,
    profile: pd.Series,
    bins: np.ndarray,
    column: str,
    what: str,
) -> None:
    """Refuse rows repeating an accepted (profile, bin) key; the first one is kept."""
    valid = ~check.refused
    keys = pd.DataFrame({"p": profile.to_numpy(), "b": bins, "line": cells["_line"].to_numpy()})
    sub = keys[valid]
    dup = sub.duplicated(["p", "b"], keep="first")
    if not dup.any():
        return
    first = sub.groupby(["p", "b"])["line"].transform("first")
    mask = np.zeros(len(keys), dtype=bool)
    reasons = np.full(len(keys), "", dtype=object)
    idx = np.flatnonzero(valid)[dup.to_numpy()]
    mask[idx] = True
    for i, line in zip(idx, first[dup].to_numpy(), strict=True):
        reasons[i] = f"profile {profile.iat[i]!r}: duplicate of line {int(line)} (same {what})"
    check.flag(mask, column, reasons)
