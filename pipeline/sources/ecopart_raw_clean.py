"""The fast path of the raw PAR reader: clean raw files of a batch binned at once.

Developer note
--------------
:func:`read_par_raw <pipeline.sources.ecopart_raw.read_par_raw>` passes
:func:`~pipeline.sources.ecopart_raw._parse_clean_raw_batch` to
:func:`~pipeline.sources.table.read_many` as the bulk parser of each batch; it finds the
files' profiles and calls :func:`_read_clean_raw`. The bodies of the files (headers
stripped) are joined and read with one ``pd.read_csv`` per distinct header, the four
columns used as integers (the pieces of :mod:`pipeline.sources.ecopart_clean`: the cheap
per-file checks, the joined read halved until a file with text, a decimal or an empty cell
is alone). The checks of the careful path then run once over all the lines, and a line it
would refuse refuses its file, which the careful per-file path
(:func:`~pipeline.sources.ecopart_raw._parse_par_raw`) reads to quarantine with file, line
and column. The clean files are binned together: 5 m bins by numpy on (file, metre) keys,
the volumes by one pandas ``groupby`` sum (the careful path's, so the same compensated sums
to the last bit), the classes of the areas from a table per file, the counts by one
``bincount``. A clean file gives exactly the careful path's table.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from pipeline import sizeclasses
from pipeline.sources.ecopart_classes import SizeClasses, _count_columns, _particles_meta
from pipeline.sources.ecopart_clean import (
    _add_profile_columns,
    _Body,
    _group_by_header,
    _read_halving,
    _read_joined,
)
from pipeline.sources.table import BulkResult

__all__: list[str] = []

logger = logging.getLogger(__name__)

#: The columns read, as integers: a file with another number in them takes the careful path.
RAW_COLUMNS = ("depth", "imgcount", "area", "nbr")

#: Depths (m) and areas (px) at most this: (file, metre, area) fit one int64 key, as the
#: careful path's ``metre * 1e6 + area`` tells them apart.
_KEY_BASE = 1_000_000


class _RawRows(NamedTuple):
    """The lines of clean raw files: their file (position in the batch) and values."""

    files: np.ndarray
    depth: np.ndarray
    imgcount: np.ndarray
    area: np.ndarray
    nbr: np.ndarray
    #: The files found clean (one with no data line has no line).
    clean: np.ndarray


def _read_clean_raw(
    datas: Sequence[bytes | None],
    rows: np.ndarray,
    summary: pd.DataFrame,
    *,
    size_classes: SizeClasses,
    bin_m: float = 5.0,
    encoding: str | None = None,
    **_: Any,
) -> BulkResult:
    """Bin the clean raw PAR files of a batch at once; the others are not done.

    Clean: only the header's fields on each line; depth, imgcount, area and nbr integers
    (no empty cell), depth and area below 10^6, depth and nbr >= 0, imgcount and area > 0,
    one imgcount per metre, no (metre, area) twice.

    Parameters
    ----------
    datas : sequence of bytes or None
        The files' bytes; None for a file left to the careful path (unknown profile, no
        calibration, time-organised, unreadable).
    rows : numpy.ndarray of int
        Each file's row in ``summary`` (its profile).
    summary : pandas.DataFrame
        The metadata summary (``volimage_l``, ``aa``, ``exp``, ``lat``, ...).
    size_classes : {"detailed", "reduced"}
        Class set of the output.
    bin_m : float
        Depth bin height in metres.
    encoding : str, optional
        As :func:`~pipeline.sources.ecopart_raw.read_par_raw`'s.
    **_
        The read's other options (the careful path's), not used.

    Returns
    -------
    BulkResult
        The clean files done; ``rows_read`` their lines, ``table_rows`` their bins.
    """
    parts: list[_RawRows] = []
    for (head, enc, body_enc), bodies in _group_by_header(datas, encoding).items():
        header = [h.strip() for h in head.decode(enc).rstrip("\r").split("\t")]
        if len(set(header)) != len(header) or not set(RAW_COLUMNS) <= set(header):
            continue
        read = functools.partial(
            _read_joined,
            names=header,
            dtype=dict.fromkeys(RAW_COLUMNS, "int64"),
            encoding=body_enc,
        )
        parts += [_check_raw(part, frame) for part, frame in _read_halving(bodies, read)]
    done = np.zeros(len(datas), dtype=bool)
    none = np.zeros(len(datas), dtype="int64")
    if not parts:
        return BulkResult(done, _particles_meta(size_classes).iloc[:0], none, none)
    lines = _RawRows(*(np.concatenate(arrays) for arrays in zip(*parts, strict=True)))
    if (np.diff(lines.files) < 0).any():  # several headers: back to the files' order
        order = np.argsort(lines.files, kind="stable")
        lines = lines._replace(**{k: v[order] for k, v in lines._asdict().items() if k != "clean"})
    done[lines.clean] = True
    table, bin_files = _raw_table(lines, rows, summary, size_classes, bin_m)
    return BulkResult(
        done,
        table,
        np.bincount(lines.files, minlength=len(datas)).astype("int64"),
        np.bincount(bin_files, minlength=len(datas)).astype("int64"),
    )


def _check_raw(bodies: list[_Body], frame: pd.DataFrame) -> _RawRows:
    """Check the lines read from ``bodies`` at once; keep those of the files without fault."""
    index = np.array([b.index for b in bodies], dtype="int64")
    files = np.repeat(index, [b.n_lines for b in bodies])
    depth, imgcount, area, nbr = (frame[c].to_numpy(dtype="int64") for c in RAW_COLUMNS)
    refused = (
        (depth < 0)
        | (depth >= _KEY_BASE)
        | (imgcount <= 0)
        | (area <= 0)
        | (area >= _KEY_BASE)
        | (nbr < 0)
    )
    faulty = np.unique(files[refused])
    if len(faulty):
        keep = ~np.isin(files, faulty)
        files, depth, imgcount, area, nbr = (a[keep] for a in (files, depth, imgcount, area, nbr))
    codes, first = _first_of_runs_or_groups(files * _KEY_BASE + depth)
    differs = imgcount != imgcount[first][codes]  # imgcount is per metre
    key = (files * _KEY_BASE + depth) * _KEY_BASE + area
    if (np.diff(key) > 0).all():
        twice = np.zeros(len(key), dtype=bool)  # sorted by metre and area: the demo's order
    else:
        twice = pd.Series(key).duplicated().to_numpy()
    faulty = np.union1d(faulty, files[differs | twice])
    keep = ~np.isin(files, faulty)
    return _RawRows(
        files[keep],
        depth[keep],
        imgcount[keep],
        area[keep],
        nbr[keep],
        np.setdiff1d(index, faulty),
    )


def _first_of_runs_or_groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Code the distinct keys in order of appearance: (code of each, first line of each).

    Runs of equal keys when the keys do not decrease (lines sorted by depth), else a hash.
    """
    if len(keys) == 0 or (np.diff(keys) >= 0).all():
        start = np.ones(len(keys), dtype=bool)
        start[1:] = keys[1:] != keys[:-1]
        return np.cumsum(start) - 1, np.flatnonzero(start)
    codes, uniques = pd.factorize(keys)
    first = np.empty(len(uniques), dtype=np.intp)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)  # the last write: the first line
    return codes, first


def _raw_table(
    lines: _RawRows,
    rows: np.ndarray,
    summary: pd.DataFrame,
    size_classes: SizeClasses,
    bin_m: float,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Bin clean lines as the careful path does: the table and the file of each bin."""
    metre = lines.depth.astype("float64")  # whole metres: np.floor(depth)
    codes, first = _first_of_runs_or_groups(lines.files * _KEY_BASE + lines.depth)
    # volume of a bin: the sum over its distinct metres of imgcount x acq_volimage, summed
    # by pandas in the order of the lines as the careful path does (compensated sums)
    per_file = summary["volimage_l"].to_numpy(dtype="float64")[rows]
    metre_file = lines.files[first]
    metre_bin = sizeclasses.depth_bin_centre(metre[first], bin_m)
    metre_volume = lines.imgcount[first].astype("float64") * per_file[metre_file]
    by_bin = pd.Series(metre_volume).groupby([metre_file, metre_bin], sort=True)
    volume = by_bin.sum()
    line_bin = by_bin.ngroup().to_numpy()[codes]
    bin_files = volume.index.get_level_values(0).to_numpy()
    edges = sizeclasses.edges_mm(size_classes)
    n_classes = len(edges) - 1
    cls = _classes(lines, rows, summary, edges)
    keep = cls >= 0
    if not keep.all():
        logger.debug(
            "%d raw line(s) (%g particles) below the first class edge %g mm dropped",
            int((~keep).sum()),
            float(lines.nbr[~keep].sum()),
            edges[0],
        )
    counts = np.bincount(
        line_bin[keep] * n_classes + cls[keep],
        weights=lines.nbr[keep].astype("float64"),
        minlength=len(volume) * n_classes,
    ).reshape(len(volume), n_classes)
    profile_rows = rows[bin_files]
    table = pd.DataFrame(
        {
            "lat": summary["lat"].to_numpy(dtype="float64")[profile_rows],
            "lon": summary["lon"].to_numpy(dtype="float64")[profile_rows],
            "depth_m": volume.index.get_level_values(1).to_numpy(dtype="float64"),
            "volume_l": volume.to_numpy(dtype="float64"),
        }
    )
    table = pd.concat([table, pd.DataFrame(counts, columns=_count_columns(size_classes))], axis=1)
    profile = summary.index.to_numpy(dtype=object)[profile_rows]
    _add_profile_columns(table, summary, profile_rows, np.array([str(p) for p in profile]))
    return table, bin_files


def _classes(
    lines: _RawRows, rows: np.ndarray, summary: pd.DataFrame, edges: np.ndarray
) -> np.ndarray:
    """Class of each line's area with its profile's calibration (-1: below the first edge).

    Computed per file with the careful path's functions and scalars, once per area value
    (an area is a whole number of pixels: a table from 0 to the file's largest).
    """
    aa = summary["aa"].to_numpy(dtype="float64")
    exp = summary["exp"].to_numpy(dtype="float64")
    cls = np.empty(len(lines.area), dtype=np.intp)
    bounds = np.flatnonzero(np.diff(lines.files)) + 1
    for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(lines.area)], strict=True):
        if start == stop:
            continue
        row = rows[lines.files[start]]
        area = lines.area[start:stop]
        direct = int(area.max()) >= 4 * len(area)  # few lines, huge areas: each line once
        values = area if direct else np.arange(int(area.max()) + 1)
        esd = sizeclasses.esd_mm_from_area(values, float(aa[row]), float(exp[row]))
        found = sizeclasses.class_for_esd(esd, edges)
        cls[start:stop] = found if direct else found[area]
    return cls
