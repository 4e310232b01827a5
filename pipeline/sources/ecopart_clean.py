"""The fast path of the PAR export reader: clean files read with pandas' C parser.

Developer note
--------------
:func:`read_par_export <pipeline.sources.ecopart_export.read_par_export>` passes
:func:`_parse_clean_par_batch` to :func:`~pipeline.sources.table.read_many` as the bulk
parser of each batch: the bodies of the batch's files (headers stripped) are joined and
read with one ``pd.read_csv`` per distinct header, the checks run once over all their rows,
and one accepted table is built for the batch. A file with any fault (a cheap per-file
check, a refused row, text in a number column: the joined read is halved until the file
at fault is alone) is left to the careful per-file path
(:func:`~pipeline.sources.ecopart_export._parse_par_export`), which quarantines with file,
line and column; a clean file gives exactly the careful path's rows, so the tables are the
same as file by file. The per-file parser runs the same code on one file.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from pipeline import sizeclasses
from pipeline.errors import InputFormatError
from pipeline.io import read_bytes
from pipeline.sources.ecopart_classes import (
    _DEPTH,
    _VOLUME,
    SizeClasses,
    _class_set,
    _count_columns,
    _particles_meta,
    _round_counts,
)
from pipeline.sources.ecopart_summary import _particles_cruise
from pipeline.sources.table import MISSING_SENTINELS, BulkResult

__all__: list[str] = []


def _parse_clean_par_batch(
    urls: Sequence[str],
    *,
    summary: pd.DataFrame,
    size_classes: SizeClasses,
    storage_options: Mapping[str, Any] | None = None,
    encoding: str | None = None,
    **_: Any,
) -> BulkResult:
    """Read the clean PAR exports of a batch at once (module level: picklable).

    The bulk parser of :func:`read_par_export` (see :func:`_read_clean`); the files it
    cannot read, and those not clean, are left to :func:`_parse_par_export`. It gets the
    read's shared arguments as that one does; those saying why a profile is missing from
    the summary are not used here (a file with such a profile is not clean).
    """
    datas: list[bytes | None] = []
    for url in urls:
        try:
            datas.append(read_bytes(url, storage_options=storage_options))
        except InputFormatError:
            datas.append(None)  # the per-file parser reports it
    return _read_clean(datas, summary, size_classes, encoding)


class _Body(NamedTuple):
    """The data lines of one file of a batch, headers stripped (ends with a line end)."""

    index: int
    body: bytes
    n_lines: int


def _read_clean(
    datas: Sequence[bytes | None],
    summary: pd.DataFrame,
    size_classes: SizeClasses,
    encoding: str | None,
) -> BulkResult:
    """Read clean PAR exports with one ``pd.read_csv`` per header; the others are not done.

    Clean: every line has the header's fields, depth, volume and the class columns are
    plain numbers (no missing code, no decimal comma), every profile is in the summary and
    depth-organised, depths are 5 m bin centres, volumes > 0, no concentration < 0, no
    duplicate (profile, bin) in a file. Such a file gives exactly the table of the careful
    path (which every other file takes, to quarantine what is wrong), in a tenth of the
    time. The files' bodies (headers stripped) are joined and read once per header, the
    checks run once over all their rows, and a refused row refuses its file.
    """
    parts: list[_CleanRows] = []
    for (head, enc, body_enc), bodies in _group_by_header(datas, encoding).items():
        layout = _clean_layout(head.decode(enc), size_classes)
        if layout is None:
            continue
        numeric = [_DEPTH, _VOLUME, *layout.class_index]
        read = functools.partial(
            _read_joined,
            names=layout.header,
            dtype={layout.profile: object} | dict.fromkeys(numeric, "float64"),
            encoding=body_enc,
            na_values={c: [""] for c in numeric},
        )
        for part, frame in _read_halving(bodies, read):
            parts.append(_check_clean(part, frame, layout, summary))
    done = np.zeros(len(datas), dtype=bool)
    if not parts:
        empty = _particles_meta(size_classes).iloc[:0]
        return BulkResult(done, empty, np.zeros(len(datas), "int64"))
    rows = _CleanRows(*(np.concatenate(arrays) for arrays in zip(*parts, strict=True)))
    if (np.diff(rows.files) < 0).any():  # several headers: back to the files' order
        order = np.argsort(rows.files, kind="stable")
        rows = rows._replace(**{k: v[order] for k, v in rows._asdict().items() if k != "clean"})
    done[rows.clean] = True
    rows_read = np.bincount(rows.files, minlength=len(datas)).astype("int64")
    return BulkResult(done, _clean_table(rows, summary, size_classes), rows_read)


def _group_by_header(
    datas: Sequence[bytes | None], encoding: str | None
) -> dict[tuple[bytes, str, str], list[_Body]]:
    """Sort the files that pass the cheap checks (:func:`_split_clean`) by header.

    Keys: the header's bytes, its encoding and the encoding to read the bodies with (UTF-8
    for an ASCII body: faster, the same text). Empty when the fast paths are off or the
    encoding does not suit them.
    """
    groups: dict[tuple[bytes, str, str], list[_Body]] = {}
    if not (_FAST_PATHS and _ascii_compatible(encoding)):
        return groups
    for i, data in enumerate(datas):
        split = _split_clean(i, data, encoding) if data is not None else None
        if split is not None:
            head, enc, body = split
            key = (head, enc, "utf-8" if body.body.isascii() else enc)
            groups.setdefault(key, []).append(body)
    return groups


def _ascii_compatible(encoding: str | None) -> bool:
    """Tell whether text in ``encoding`` has ASCII's bytes for ASCII (the checks count bytes)."""
    if encoding is None:
        return True
    try:
        return b"Depth [m]\t\r\n".decode(encoding) == "Depth [m]\t\r\n"
    except (LookupError, UnicodeDecodeError):
        return False


def _split_clean(i: int, data: bytes, encoding: str | None) -> tuple[bytes, str, _Body] | None:
    """Header, encoding and body of file ``i``, or None when a cheap check fails.

    The encoding is the careful path's: ``encoding``, or UTF-8 when the whole file is valid
    UTF-8 and latin-1 otherwise. Refused: quotes, undecodable bytes (explicit encoding), a
    ``\r`` that does not end a line, a total of tabs other than the header's per line, a
    first line with another number of tabs than the header (other lines with too many
    fields fail the read).
    """
    if b'"' in data:
        return None
    octets = np.frombuffer(data, dtype=np.uint8)  # the counts below in numpy: 6x bytes.count
    after_cr = np.flatnonzero(octets == _CR) + 1
    if len(after_cr) and (after_cr[-1] == len(data) or (octets[after_cr] != _LF).any()):
        return None  # a carriage return that does not end a line: the careful path splits
    end = data.find(b"\n")
    head, body = (data, b"") if end < 0 else (data[:end], data[end + 1 :])
    enc = encoding or "utf-8"
    try:
        (head if body.isascii() else data).decode(enc)
    except UnicodeDecodeError:
        if encoding is not None:
            return None
        enc = "latin-1"
    body_octets = octets[len(data) - len(body) :]
    n_lines = _count_lines(body, body_octets)
    tabs = head.count(b"\t")
    if np.count_nonzero(body_octets == _TAB) != n_lines * tabs:
        return None  # a line with too few or too many fields
    start = _BLANK.match(body).end()  # blank lines skipped
    end = body.find(b"\n", start)
    if n_lines and body.count(b"\t", start, len(body) if end < 0 else end) != tabs:
        # one more field on the first line, one less on another: read_csv (usecols) refuses
        # it too, but an extra field there can also be taken for an index, not here
        return None
    if body and not body.endswith(b"\n"):
        body += b"\n"
    return head, enc, _Body(i, body, n_lines)


def _count_lines(body: bytes, octets: np.ndarray) -> int:
    """Count the lines that are not blank (in numpy when none is empty: the usual file).

    ``octets``: the body's bytes as an array.
    """
    ends = np.flatnonzero(octets == _LF)
    if len(ends):
        starts = np.empty_like(ends)
        starts[0], starts[1:] = 0, ends[:-1] + 1
        length = ends - starts
        if ((length == 0) | ((length == 1) & (octets[starts] == _CR))).any():  # "" or "\r"
            return sum(1 for line in body.split(b"\n") if line.strip())
    # a blank line that is not empty counts here: too few tabs or no depth refuse its file
    return len(ends) + (len(body) > 0 and not body.endswith(b"\n"))


class _Layout(NamedTuple):
    header: list[str]
    profile: str
    class_index: dict[str, int]


def _clean_layout(head: str, size_classes: SizeClasses) -> _Layout | None:
    """Find the columns of a header; None when its files take the careful path."""
    header = [h.strip() for h in head.rstrip("\r").split("\t")]
    kind, class_index = _class_set(header)
    profile_col = next((c for c in ("Profile", "profile") if c in header), None)
    if kind != size_classes or profile_col is None or _DEPTH not in header or _VOLUME not in header:
        return None
    if len(set(header)) != len(header):
        return None
    return _Layout(header, profile_col, class_index)


def _read_halving(
    bodies: list[_Body], read: Callable[[list[_Body]], pd.DataFrame | None]
) -> list[tuple[list[_Body], pd.DataFrame]]:
    """Read files at once with ``read``, halving the set where it fails (None).

    Returns the parts read and their frames; a file that cannot be read alone is left out
    (the careful path quarantines what is wrong in it).
    """
    out, todo = [], [bodies]
    while todo:
        part = todo.pop()
        frame = read(part)
        if frame is not None:
            out.append((part, frame))
        elif len(part) > 1:  # text in a number column somewhere: find the file(s)
            todo += [part[len(part) // 2 :], part[: len(part) // 2]]
    return out


def _read_joined(
    bodies: list[_Body],
    *,
    names: list[str],
    dtype: Mapping[str, Any],
    encoding: str,
    na_values: Mapping[str, list[str]] | None = None,
) -> pd.DataFrame | None:
    """Read the joined bodies' columns ``dtype`` with the C parser; None where it fails.

    None also when the rows read are not the lines counted. No missing value but the
    ``na_values`` given.
    """
    if not any(b.n_lines for b in bodies):  # headers alone: no row (read_csv would refuse)
        return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in dtype.items()})
    try:
        frame = pd.read_csv(
            io.BytesIO(b"".join(b.body for b in bodies)),
            encoding=encoding,
            sep="\t",
            header=None,
            names=names,
            usecols=list(dtype),
            dtype=dict(dtype),
            keep_default_na=False,
            na_values=na_values,
            engine="c",
        )
    except (pd.errors.ParserError, ValueError, OverflowError):
        return None  # text in a number column: the careful path quarantines it
    return frame if len(frame) == sum(b.n_lines for b in bodies) else None


class _CleanRows(NamedTuple):
    """The rows of clean files: their file, profile, summary row, depth, volume, counts."""

    files: np.ndarray
    profile: np.ndarray
    rows: np.ndarray
    depth: np.ndarray
    volume: np.ndarray
    concs: np.ndarray
    #: The files found clean (one with no data line has no row).
    clean: np.ndarray


def _check_clean(
    bodies: list[_Body], frame: pd.DataFrame, layout: _Layout, summary: pd.DataFrame
) -> _CleanRows:
    """Check the rows read from ``bodies`` at once; keep those of the files without fault."""
    files = np.repeat(np.array([b.index for b in bodies]), [b.n_lines for b in bodies])
    depth = frame[_DEPTH].to_numpy(dtype="float64")
    volume = frame[_VOLUME].to_numpy(dtype="float64")
    concs = frame[list(layout.class_index)].to_numpy(dtype="float64")
    codes, names = pd.factorize(frame[layout.profile].to_numpy(dtype=object))
    names = np.array([str(n).strip() for n in names], dtype=object)
    found = np.append(summary.index.get_indexer(names), -1)[codes]  # code -1: no name
    declared = summary["organized_by_depth"].eq(False).fillna(False).to_numpy(dtype=bool)
    time_organised = np.append(declared, False)[found]  # the careful path's test, vectorised
    bins = sizeclasses.depth_bin_centre(depth)
    refused = (
        (found < 0)
        | time_organised
        | np.isnan(depth)
        | np.isnan(volume)
        | np.isin(depth, _SENTINEL_VALUES)
        | np.isin(volume, _SENTINEL_VALUES)
        | np.isin(concs, _SENTINEL_VALUES).any(axis=1)
        | (depth < 0)
        | (np.abs(depth - bins) > 1e-6)
        | (volume <= 0)
        | (concs < 0).any(axis=1)
        | _duplicated(files, found, bins)
    )
    faulty = np.unique(files[refused])
    keep = ~np.isin(files, faulty)
    counts = np.full((len(frame), len(layout.class_index)), np.nan)
    counts[:, list(layout.class_index.values())] = concs
    return _CleanRows(
        files[keep],
        np.append(names, "")[codes[keep]],
        found[keep],
        depth[keep],
        volume[keep],
        counts[keep],
        np.setdiff1d([b.index for b in bodies], faulty),
    )


def _duplicated(files: np.ndarray, profile: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Mark every row whose (file, profile, bin) another row of the file repeats."""
    order = np.lexsort((bins, profile, files))
    f, p, b = files[order], profile[order], bins[order]
    same = (f[1:] == f[:-1]) & (p[1:] == p[:-1]) & (b[1:] == b[:-1])
    out = np.zeros(len(files), dtype=bool)
    out[order[1:][same]] = True
    return out


def _clean_table(
    rows: _CleanRows, summary: pd.DataFrame, size_classes: SizeClasses
) -> pd.DataFrame:
    """Build the accepted table of clean rows (counts: concentration x volume, rounded)."""
    count_names = _count_columns(size_classes)
    out = np.empty((len(rows.files), 4 + len(count_names)))
    counts = out[:, 4:]
    np.multiply(rows.concs, rows.volume[:, None], out=counts)
    _round_counts(counts)
    out[:, 0] = summary["lat"].to_numpy()[rows.rows]
    out[:, 1] = summary["lon"].to_numpy()[rows.rows]
    out[:, 2] = rows.depth
    out[:, 3] = rows.volume
    table = pd.DataFrame(out, columns=["lat", "lon", "depth_m", "volume_l", *count_names])
    _add_profile_columns(table, summary, rows.rows, rows.profile)
    return table


def _add_profile_columns(
    table: pd.DataFrame, summary: pd.DataFrame, rows: np.ndarray, profile: np.ndarray
) -> None:
    """Add ``profile_id``, ``time`` and ``cruise`` of summary rows ``rows`` to ``table``.

    Appended last: the batch puts every column in its place once (conform).
    """
    table["profile_id"] = pd.array(profile, dtype=_PROFILE_DTYPE)
    table["time"] = summary["time"].array.take(rows)
    cruise = _particles_cruise(summary).to_numpy()[rows]
    table["cruise"] = pd.array(cruise, dtype=_PROFILE_DTYPE)


#: Clean files take a fast path (tests switch it off to compare with the careful one).
_FAST_PATHS = True
_SENTINEL_VALUES = [float(m) for m in MISSING_SENTINELS]
_PROFILE_DTYPE = pd.Series([], dtype=str).dtype
_TAB, _LF, _CR = 9, 10, 13
_BLANK = re.compile(rb"\s*")
