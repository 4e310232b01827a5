"""EcoPart raw PAR exports (``*_PAR_raw_*.tsv``) binned into the particles table.

The sub-step of the EcoPart reader (:mod:`pipeline.sources.ecopart`) that turns raw
1 m rows of particle areas (pixels) into 5 m depth bins and ESD size classes exactly as
EcoPart does: :func:`read_par_raw`, its per-file parser (the careful path, which
quarantines), its bulk parser (clean files of a batch binned at once, see
:mod:`pipeline.sources.ecopart_raw_clean`) and the profile lookup from the file name. The
choices made are listed in :mod:`pipeline.sources.ecopart`.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline import sizeclasses
from pipeline.errors import InputFormatError
from pipeline.io import read_bytes
from pipeline.sources.archive import ArchiveFile
from pipeline.sources.ecopart_classes import SizeClasses, _count_columns, particles_meta
from pipeline.sources.ecopart_export import _flag_duplicates, _kinds
from pipeline.sources.ecopart_raw_clean import RAW_COLUMNS, _read_clean_raw
from pipeline.sources.ecopart_summary import (
    PAR_RAW,
    _basename,
    _flag_values,
    _load_summary,
    _mark_used,
    _missing_profile_reason,
    _particles_cruise,
    _show_columns,
    _sort_files,
)
from pipeline.sources.table import (
    BulkResult,
    FileResult,
    ReadResult,
    RowChecker,
    read_many,
    to_float,
    tokenize,
)

__all__ = ["read_par_raw"]

# One logger for the whole EcoPart reader: its name, "pipeline.sources.ecopart", is the
# one callers filter on.
logger = logging.getLogger(__name__)

_RAW_REQUIRED = RAW_COLUMNS
_RAW_NAME = re.compile(r"^(?P<head>.+)_PAR_raw_[^/]*$")


# ---------------------------------------------------------------------- raw exports


def read_par_raw(
    urls: str | Sequence[str] | Sequence[ArchiveFile],
    *,
    metadata_url: str | None = None,
    size_classes: SizeClasses = "detailed",
    bin_m: float = 5.0,
    storage_options: Mapping[str, Any] | None = None,
    encoding: str | None = None,
    batch_bytes: int | None = None,
) -> ReadResult:
    """Read EcoPart raw PAR exports (``*_PAR_raw_*.tsv``) into the particles table, lazily.

    Raw rows are per metre and particle area: ``depth`` (m, depth offset already
    added by EcoPart), ``imgcount`` (images in that metre, repeated on each row),
    ``area`` (px), ``nbr`` (particles of that area), ``greylimit1-3`` [+ ``datetime``].
    As EcoPart does: bins of ``bin_m`` metres from 0; the volume of a bin is the sum
    over its distinct metres of ``imgcount`` x ``acq_volimage``; ESD (mm) =
    2 sqrt(aa x area ** exp / pi) with the profile's ``acq_aa``/``acq_exp``; counts are
    ``nbr`` summed per class and bin (areas below the first class edge are dropped,
    logged at DEBUG). The profile is the one whose ``Particle filename`` is the file's
    name, else the one the name ends with (``<yyyymmddhhmmss>_<profile>_PAR_raw_...``).

    Parameters
    ----------
    urls : str or sequence of str
        Files, folders, glob patterns, ``.zip`` archives or ``s3://`` prefixes, as in
        :func:`read_par_export` (expanded inputs: only ``*_PAR_raw_*.tsv`` are read, the
        other files listed in ``inventory``).
    metadata_url : str, optional
        The raw export's ``*_Export_metadata_summary.tsv`` (90 columns); by default the
        one found among the inputs or in the folder of the first file.
    size_classes : {"detailed", "reduced"}
        Class set of the output.
    bin_m : float
        Depth bin height in metres (EcoPart: 5).
    storage_options : mapping, optional
        Passed to fsspec.
    encoding : str, optional
        ``None`` (default) detects UTF-8 or latin-1; explicit is strict.
    batch_bytes : int, optional
        Input bytes per task, at most (default
        :data:`~pipeline.sources.table.BATCH_BYTES`); see
        :func:`~pipeline.sources.table.plan_batches`.

    Returns
    -------
    ReadResult
        Lazy ``accepted`` (:func:`particles_meta` columns, one row per bin),
        ``quarantine`` (lines: text or missing numbers, negative depth or count,
        ``imgcount`` <= 0 or differing within a metre, area <= 0, duplicate (metre,
        area) lines; whole files: unknown profile, time-organised sample, missing
        calibration) and ``stats`` counting *lines* (read = used + quarantined).

    Raises
    ------
    InputFormatError
        When no file is given, ``size_classes`` or ``bin_m`` is invalid, or the metadata
        summary cannot be found or read.

    See Also
    --------
    read_par_export : the same table from detailed/reduced exports.
    """
    files, found, inventory = _sort_files(urls, storage_options, (PAR_RAW,))
    if not files:
        raise InputFormatError(
            "read_par_raw: no raw PAR file ('*_PAR_raw_*.tsv') among the inputs "
            f"({len(inventory)} file(s) found: {_kinds(inventory)})."
        )
    urls = [f.url for f in files]
    if size_classes not in ("detailed", "reduced"):
        raise InputFormatError(
            f"size_classes={size_classes!r} is not a class set; valid: 'detailed', 'reduced'."
        )
    if not (bin_m > 0 and math.isfinite(bin_m)):
        raise InputFormatError(f"bin_m={bin_m!r}: the depth bin height must be > 0 metres.")
    summary_url, summary, bad = _load_summary(
        urls, metadata_url, storage_options, encoding, "raw", found
    )
    options = {
        "size_classes": size_classes,
        "bin_m": float(bin_m),
        "storage_options": dict(storage_options) if storage_options else None,
        "encoding": encoding,
    }
    parse = functools.partial(_parse_par_raw, **options)
    # the summary: one copy in the graph, whatever the number of batches
    shared = {
        "summary": summary,
        "bad_profiles": bad,
        "summary_url": summary_url,
        "by_file": _profiles_by_file(summary),
    }
    bulk = functools.partial(_parse_clean_raw_batch, **options)
    meta = particles_meta(size_classes)
    result = read_many(files, parse, meta, batch_bytes=batch_bytes, shared=shared, parse_bulk=bulk)
    result.inventory = _mark_used(inventory, summary_url)
    return result


def _raw_profile(
    url: str, summary: pd.DataFrame, by_file: Mapping[str, str] | None = None
) -> str | None:
    """Find the profile of a raw PAR file: by ``Particle filename``, else by its name.

    Hash lookups only (``by_file``: file name -> profile, made once per read), so each
    file costs the same whatever the number of profiles in the summary.
    """
    name = _basename(url)
    plain = re.sub(r"\.(gz|bz2|xz|zst)$", "", name)
    if by_file is None:
        by_file = _profiles_by_file(summary)
    if plain in by_file:
        return by_file[plain]
    m = _RAW_NAME.match(plain)
    if not m:
        return None
    parts = m["head"].split("_")
    # the longest tail of the name's head that is a profile id ("<stamp>_<profile>")
    tails = ["_".join(parts[k:]) for k in range(len(parts))]
    found = summary.index.get_indexer(tails)
    hits = [t for t, i in zip(tails, found, strict=True) if i >= 0]
    return max(hits, key=len) if hits else None


def _profiles_by_file(summary: pd.DataFrame) -> dict[str, str]:
    out: dict[str, str] = {}
    for pid, file in zip(summary.index, summary["particle_file"].to_numpy(), strict=True):
        if file and file not in out:
            out[str(file)] = str(pid)
    return out


def _profile_problem(pid: str, info: pd.Series, summary_url: str) -> str | None:
    """Say why a profile's lines cannot be binned (time-organised, no calibration), or None."""
    by_depth = info["organized_by_depth"]
    if pd.notna(by_depth) and not bool(by_depth):
        return (
            f"profile {pid!r} is a time-organised sample (organizedbydeepth False): it has no "
            "depth bins and is not part of the particles table"
        )
    for key, col in (("volimage_l", "acq_volimage"), ("aa", "acq_aa"), ("exp", "acq_exp")):
        if not (info[key] > 0):
            return (
                f"profile {pid!r}: {col} is {info[key]} in the metadata summary "
                f"{summary_url}; it must be > 0 to compute volumes and sizes"
            )
    return None


def _parse_clean_raw_batch(
    urls: Sequence[str],
    *,
    summary: pd.DataFrame,
    summary_url: str,
    storage_options: Mapping[str, Any] | None = None,
    by_file: Mapping[str, str] | None = None,
    **options: Any,
) -> BulkResult:
    """Bin the clean raw PAR files of a batch at once (module level: picklable).

    The bulk parser of :func:`read_par_raw` (see :func:`_read_clean_raw`): it finds each
    file's profile as :func:`_parse_par_raw` does and leaves it the files whose profile is
    unknown or cannot be binned, and those that are not clean. It gets the read's shared
    arguments and options as that one does; ``options`` (``size_classes``, ``bin_m``,
    ``encoding``) go to :func:`_read_clean_raw`, which ignores the others.
    """
    datas: list[bytes | None] = []
    rows = np.full(len(urls), -1, dtype=np.intp)
    for i, url in enumerate(urls):
        pid = _raw_profile(url, summary, by_file)
        data = None
        if pid is not None and _profile_problem(pid, summary.loc[pid], summary_url) is None:
            rows[i] = summary.index.get_loc(pid)
            try:
                data = read_bytes(url, storage_options=storage_options)
            except InputFormatError:
                pass  # the per-file parser reports it
        datas.append(data)
    return _read_clean_raw(datas, rows, summary, **options)


def _parse_par_raw(
    url: str,
    *,
    summary: pd.DataFrame,
    bad_profiles: Mapping[str, str],
    summary_url: str,
    size_classes: SizeClasses,
    bin_m: float = 5.0,
    storage_options: Mapping[str, Any] | None = None,
    encoding: str | None = None,
    by_file: Mapping[str, str] | None = None,
) -> FileResult:
    """Parse one raw PAR export file into 5 m bins (module level: picklable)."""
    raw = tokenize(read_bytes(url, storage_options=storage_options), url, encoding=encoding)
    cells = raw.cells
    check = RowChecker(raw)
    meta = particles_meta(size_classes)

    def done() -> FileResult:
        res = check.result(cells)
        return FileResult(url, meta.copy(), res.quarantine, res.rows_read, rows_accepted=0)

    missing = [c for c in _RAW_REQUIRED if c not in raw.header]
    for col in missing:
        check.flag_all(
            col,
            f"required column {col!r} is missing; columns found: {_show_columns(raw.header)}. "
            "Raw PAR exports have depth, imgcount, area, nbr, greylimit1-3.",
        )
    if missing:
        logger.warning("%s: required column(s) %s missing; every line quarantined", url, missing)
        return done()
    pid = _raw_profile(url, summary, by_file)
    if pid is None:
        m = _RAW_NAME.match(_basename(url))
        guess = m["head"].split("_", 1)[-1] if m else _basename(url)
        check.flag_all("", _missing_profile_reason(guess, summary_url, bad_profiles))
        return done()
    info = summary.loc[pid]
    problem = _profile_problem(pid, info, summary_url)
    if problem is not None:
        check.flag_all("", problem)
        return done()

    values = {}
    for col in _RAW_REQUIRED:
        v, bad = to_float(cells[col], missing=())
        _flag_values(check, bad, cells, col, "not a number: {v!r}", None)
        _flag_values(check, np.isnan(v), cells, col, f"missing {col}", None)
        values[col] = v
    depth, imgcount, area, nbr = (values[c] for c in _RAW_REQUIRED)
    _flag_values(check, depth < 0, cells, "depth", "negative depth {v!r}", None)
    _flag_values(check, imgcount <= 0, cells, "imgcount", "image count {v!r} is not > 0", None)
    _flag_values(check, area <= 0, cells, "area", "area {v!r} px is not > 0", None)
    _flag_values(check, nbr < 0, cells, "nbr", "negative particle count {v!r}", None)
    metre = np.floor(depth)
    # imgcount is per metre: every line of a metre must agree with the metre's first.
    ok = ~check.refused
    frame = pd.DataFrame({"m": metre, "img": imgcount, "line": cells["_line"].to_numpy()})
    first = frame[ok].groupby("m")[["img", "line"]].transform("first")
    differs = np.zeros(len(frame), dtype=bool)
    differs[np.flatnonzero(ok)] = first["img"].to_numpy() != frame["img"][ok].to_numpy()
    if differs.any():
        reasons = np.full(len(frame), "", dtype=object)
        for j in np.flatnonzero(differs[ok]):
            i = np.flatnonzero(ok)[j]
            reasons[i] = (
                f"imgcount {imgcount[i]:g} differs from line {int(first['line'].iat[j])}'s "
                f"({first['img'].iat[j]:g}) for metre {metre[i]:g}"
            )
        check.flag(differs, "imgcount", reasons)
    _flag_duplicates(
        check, cells, pd.Series([pid] * len(cells)), metre * 1e6 + area, "area", "metre and area"
    )

    ok = ~check.refused
    n_ok = int(ok.sum())
    if n_ok == 0:
        return done()
    depth, metre, imgcount, area, nbr = depth[ok], metre[ok], imgcount[ok], area[ok], nbr[ok]
    bins = sizeclasses.depth_bin_centre(metre, bin_m)
    per_metre = pd.DataFrame({"m": metre, "img": imgcount, "b": bins}).drop_duplicates("m")
    volume = (per_metre["img"] * float(info["volimage_l"])).groupby(per_metre["b"]).sum()
    edges = sizeclasses.edges_mm(size_classes)
    esd = sizeclasses.esd_mm_from_area(area, float(info["aa"]), float(info["exp"]))
    cls = sizeclasses.class_for_esd(esd, edges)
    below = cls < 0
    if below.any():
        logger.debug(
            "%s: %d line(s) (%g particles) below the first class edge %g mm dropped",
            url,
            int(below.sum()),
            float(nbr[below].sum()),
            edges[0],
        )
    row_of = {b: i for i, b in enumerate(volume.index)}
    counts = np.zeros((len(volume), len(edges) - 1))
    keep = ~below
    np.add.at(counts, ([row_of[b] for b in bins[keep]], cls[keep]), nbr[keep])
    table = pd.DataFrame(
        {
            "profile_id": pid,
            "lat": float(info["lat"]),
            "lon": float(info["lon"]),
            "time": pd.Series([info["time"]] * len(volume), dtype="datetime64[ns, UTC]"),
            "depth_m": volume.index.to_numpy(dtype="float64"),
            "volume_l": volume.to_numpy(dtype="float64"),
            "cruise": str(_particles_cruise(summary).loc[pid]),
        }
    )
    table = pd.concat([table, pd.DataFrame(counts, columns=_count_columns(size_classes))], axis=1)
    res = check.result(cells)
    return FileResult(url, table, res.quarantine, res.rows_read, rows_accepted=n_ok)
