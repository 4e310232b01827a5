"""EcoPart (UVP5/UVP6 particle module) exports into the canonical particles table.

Four readers, one per kind of EcoPart legacy export, all returning the particles table
(one row per profile x 5 m depth bin: ``profile_id, lat, lon, time, depth_m, volume_l,
n_<lo>_<hi>um`` counts) through :func:`~pipeline.sources._table.read_many`, lazily, one
dask task per file:

- :func:`read_par_export`: detailed (45 classes) or reduced (15 classes) PAR exports, one
  file per profile or ``*_PAR_Aggregated.tsv``; concentrations x volume -> counts.
- :func:`read_par_raw`: raw PAR exports (``*_PAR_raw_*.tsv``, 1 m rows of particle areas
  in pixels), binned here into 5 m bins and ESD classes exactly as EcoPart does.
- :func:`read_ecopart`: dispatches by file name and refuses other kinds (ZOO, CTD, ODV,
  metadata summaries) with an error naming the supported ones.
- :func:`read_metadata_summary`: the ``*_Export_metadata_summary.tsv`` (either style), read
  eagerly (it is small) for positions, times and calibration.

Developer note
--------------
*Choices made and why* (each automatic choice is logged at INFO):

- Position and time come from the metadata summary, one per profile (the cast's start,
  ``yyyy-mm-dd hh:mm`` or ``sampledate``), for every bin: the raw and the detailed
  exports then give identical tables. The per-bin times of UVP6 exports are not kept.
- A PAR file missing a required column (``Depth [m]``, ``Sampled volume [L]``,
  ``Profile``, ``depth``, ``imgcount``, ``area``, ``nbr``) has **every row quarantined**,
  each naming the missing column and the columns found, so the counts still reconcile
  and nothing is lost. A metadata summary missing a required column raises
  :class:`InputFormatError` instead: without it nothing can be placed.
- Time-organised samples (UVPapp ``uvpappsampleT1``; ``organizedbydeepth`` False in the
  raw summary; in detailed exports, depths that are not 5 m bin centres) have no depth
  bins: their rows are quarantined with that reason.
- Raw depths already include the depth offset: EcoPart adds ``default_depthoffset`` (or
  ``acq_depthoffset``) to the pressure when it builds the raw histogram
  (``uvp_sample_import.py``), before the export. It is therefore not added again;
  checked on the QA exports, where raw depth 2 m falls in the detailed export's 2.5 m bin.
- ``acq_aa`` of the raw summary is used as is (area_mm2 = aa x area_px ** exp). EcoPart
  stores UVP6 ``aa`` already divided by 10^6; a UVP6 ``aa`` above 0.1 (an undivided
  value, in µm²) is divided by 10^6 and logged.
- For raw files, ``stats`` counts input *lines* (``rows_accepted`` = lines used), while
  ``accepted`` holds the 5 m bins built from them.
- Metadata-summary rows that fail validation (latitude or longitude out of range,
  unparseable date) are logged; the PAR rows of those profiles are quarantined with the
  summary's reason, so the PAR files' counts reconcile.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import dask.dataframe as dd
import fsspec
import numpy as np
import pandas as pd
from fsspec.core import url_to_fs

from pipeline import sizeclasses
from pipeline.errors import InputFormatError
from pipeline.io import expand_urls, parent_url, read_bytes
from pipeline.sources._table import (
    FileResult,
    RawTable,
    ReadResult,
    RowChecker,
    read_many,
    to_float,
    tokenize,
)

__all__ = [
    "SUMMARY_META",
    "particles_meta",
    "read_ecopart",
    "read_metadata_summary",
    "read_par_export",
    "read_par_raw",
]

logger = logging.getLogger(__name__)

SizeClasses = Literal["detailed", "reduced"]

#: Columns of the table returned by :func:`read_metadata_summary` (one row per profile).
SUMMARY_META = pd.DataFrame(
    {
        "profile_id": pd.Series([], dtype=str),
        "lat": pd.Series([], dtype="float64"),
        "lon": pd.Series([], dtype="float64"),
        "time": pd.Series([], dtype="datetime64[ns, UTC]"),
        "instrument": pd.Series([], dtype=str),
        "aa": pd.Series([], dtype="float64"),
        "exp": pd.Series([], dtype="float64"),
        "volimage_l": pd.Series([], dtype="float64"),
        "pixel_size_mm": pd.Series([], dtype="float64"),
        "depth_offset_m": pd.Series([], dtype="float64"),
        "organized_by_depth": pd.Series([], dtype="boolean"),
        "project": pd.Series([], dtype=str),
        "cruise": pd.Series([], dtype=str),
        "station": pd.Series([], dtype=str),
        "raw_filename": pd.Series([], dtype=str),
        "particle_file": pd.Series([], dtype=str),
        "plankton_file": pd.Series([], dtype=str),
        "summary_line": pd.Series([], dtype="int64"),
    }
)

# Summary header names per style: canonical name -> header(s), first present wins.
_SUMMARY_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "export": {
        "profile_id": ("profile", "Profile"),
        "lat": ("Latitude",),
        "lon": ("Longitude",),
        "time": ("yyyy-mm-dd hh:mm",),
        "instrument": ("Instrument",),
        "aa": ("aa",),
        "exp": ("exp",),
        "pixel_size_mm": ("Pixel size",),
        "project": ("Project",),
        "cruise": ("Cruise",),
        "station": ("Site",),
        "raw_filename": ("Rawfilename",),
        "particle_file": ("Particle filename",),
        "plankton_file": ("Plankton filename",),
    },
    "raw": {
        "profile_id": ("profileid",),
        "lat": ("latitude",),
        "lon": ("longitude",),
        "time": ("sampledate",),
        "instrument": ("instrumtype",),
        "aa": ("acq_aa",),
        "exp": ("acq_exp",),
        "volimage_l": ("acq_volimage",),
        "pixel_size_mm": ("acq_pixel",),
        "depth_offset_m": ("default_depthoffset", "acq_depthoffset"),
        "organized_by_depth": ("organizedbydeepth",),
        "project": ("ptitle",),
        "cruise": ("cruise",),
        "station": ("stationid",),
        "raw_filename": ("filename",),
        "particle_file": ("Particle filename",),
        "plankton_file": ("Plankton filename",),
    },
}
_REQUIRED_SUMMARY = ("profile_id", "lat", "lon", "time")

_DEPTH = "Depth [m]"
_VOLUME = "Sampled volume [L]"
_RAW_REQUIRED = ("depth", "imgcount", "area", "nbr")
_SUMMARY_GLOB = "*_Export_metadata_summary.tsv*"
_RAW_NAME = re.compile(r"^(?P<head>.+)_PAR_raw_[^/]*$")
_ROUND_RTOL = 1e-6
_FIX_REEXPORT = "re-export the file from EcoPart or fix the line"


# ----------------------------------------------------------------------------- meta


def particles_meta(size_classes: SizeClasses = "detailed") -> pd.DataFrame:
    """Return the empty canonical particles table for a class set.

    Parameters
    ----------
    size_classes : {"detailed", "reduced"}
        45 detailed or 15 reduced EcoPart ESD classes.

    Returns
    -------
    pandas.DataFrame
        ``profile_id, lat, lon, time, depth_m, volume_l`` then one float64 count column
        per class, in ascending order.

    Examples
    --------
    >>> meta = particles_meta("reduced")
    >>> list(meta.columns[:6]), len(meta.columns), meta.columns[-1]
    (['profile_id', 'lat', 'lon', 'time', 'depth_m', 'volume_l'], 21, 'n_16400_infum')
    """
    edges = sizeclasses.edges_mm(size_classes)
    columns: dict[str, pd.Series] = {
        "profile_id": pd.Series([], dtype=str),
        "lat": pd.Series([], dtype="float64"),
        "lon": pd.Series([], dtype="float64"),
        "time": pd.Series([], dtype="datetime64[ns, UTC]"),
        "depth_m": pd.Series([], dtype="float64"),
        "volume_l": pd.Series([], dtype="float64"),
    }
    for lo, hi in itertools.pairwise(edges):
        columns[sizeclasses.class_column(lo, hi)] = pd.Series([], dtype="float64")
    return pd.DataFrame(columns)


def _count_columns(size_classes: SizeClasses) -> list[str]:
    return list(particles_meta(size_classes).columns[6:])


# ------------------------------------------------------------------ metadata summary


def read_metadata_summary(
    url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    encoding: str | None = None,
) -> FileResult:
    """Read an EcoPart ``*_Export_metadata_summary.tsv`` (one row per profile), eagerly.

    Both styles are read: the detailed/reduced export summary (``profile``,
    ``Latitude``, ``Longitude``, ``yyyy-mm-dd hh:mm``, ``aa``, ``exp``, ``Pixel size``,
    ``Instrument``, ...) and the 90-column raw export summary (``profileid``,
    ``latitude``, ``longitude``, ``sampledate``, ``acq_aa``, ``acq_exp``,
    ``acq_volimage``, ``acq_pixel``, ``default_depthoffset``, ``instrumtype``, ...).

    Parameters
    ----------
    url : str
        Local path or fsspec URL (``s3://``, ``zip://member::archive.zip``, ``.gz``).
    storage_options : mapping, optional
        Passed to fsspec.
    encoding : str, optional
        ``None`` (default) detects UTF-8 or latin-1; an explicit encoding is strict and
        quarantines the lines it cannot decode.

    Returns
    -------
    FileResult
        ``accepted``: one row per valid profile with the :data:`SUMMARY_META` columns
        (``instrument`` ``'uvp5'``/``'uvp6'``, ``pixel_size_mm`` in mm whatever the
        instrument, ``volimage_l``, ``depth_offset_m`` and ``organized_by_depth`` only in
        raw summaries, else NaN/NA); ``quarantine``: refused rows (latitude or longitude
        out of range, unparseable date, empty or duplicate profile id, malformed line);
        ``rows_read``.

    Raises
    ------
    InputFormatError
        When the file is missing, empty, of neither style, or lacks a required column
        (profile id, latitude, longitude, date); the message names the file, the
        column and the columns found.

    See Also
    --------
    read_par_export, read_par_raw : use it for positions, times and calibration.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x_Export_metadata_summary.tsv")
    >>> _ = open(path, "wb").write(
    ...     b"profile\\tInstrument\\tyyyy-mm-dd hh:mm\\tLatitude \\tLongitude\\taa\\texp\\r\\n"
    ...     b"p1\\tuvp5\\t2019-11-21 01:00:00\\t44.09\\t7.57\\t0.0002\\t1.02\\r\\n"
    ...     b"p2\\tuvp5\\t2019-11-21 02:00:00\\t95\\t7.57\\t0.0002\\t1.02\\r\\n"
    ... )
    >>> res = read_metadata_summary(path)
    >>> res.accepted[["profile_id", "lat", "lon", "instrument"]].to_dict("records")
    [{'profile_id': 'p1', 'lat': 44.09, 'lon': 7.57, 'instrument': 'uvp5'}]
    >>> res.quarantine["reason"].tolist()
    ["profile 'p2': latitude 95.0 is out of [-90, 90]"]
    """
    return _read_summary(url, storage_options=storage_options, encoding=encoding)[0]


def _read_summary(
    url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    encoding: str | None = None,
) -> tuple[FileResult, dict[str, str]]:
    """Read a summary; also return, per refused profile id, why it was refused."""
    raw = tokenize(read_bytes(url, storage_options=storage_options), url, encoding=encoding)
    style = _summary_style(raw)
    names = {
        key: next((h for h in options if h in raw.header), None)
        for key, options in _SUMMARY_COLUMNS[style].items()
    }
    for key in _REQUIRED_SUMMARY:
        if names[key] is None:
            raise InputFormatError(
                f"{url}:1: the {style} metadata summary has no column "
                f"{' or '.join(map(repr, _SUMMARY_COLUMNS[style][key]))}; columns found: "
                f"{_show_columns(raw.header)}. Re-export the summary from EcoPart."
            )
    cells = raw.cells
    check = RowChecker(raw)

    def text(key: str) -> pd.Series:
        col = names.get(key)
        if col is None:
            return pd.Series([""] * len(cells), dtype=str)
        return cells[col].astype(str).str.strip()

    def number(key: str, *, flag: bool = False) -> np.ndarray:
        col = names.get(key)
        if col is None:
            return np.full(len(cells), np.nan)
        values, bad = to_float(cells[col])
        if flag:
            _flag_values(check, bad, cells, col, "not a number: {v!r}", profile)
        return values

    profile = text("profile_id")
    check.flag(profile.to_numpy() == "", names["profile_id"], "empty profile id")
    lat = number("lat", flag=True)
    lon = number("lon", flag=True)
    for key, values, span in (("lat", lat, "[-90, 90]"), ("lon", lon, "[-180, 360)")):
        col = names[key]
        word = "latitude" if key == "lat" else "longitude"
        _flag_values(check, np.isnan(values), cells, col, f"missing {word}", profile)
        with np.errstate(invalid="ignore"):
            out = (np.abs(values) > 90) if key == "lat" else ((values < -180) | (values >= 360))
        reasons = [f"{word} {v!r} is out of {span}" for v in values.tolist()]
        _flag_values(check, out, cells, col, reasons, profile)
    lon = np.where(lon >= 180.0, lon - 360.0, lon)  # [0, 360) -> [-180, 180), exact otherwise
    time = _parse_time(text("time"))
    _flag_values(
        check,
        time.isna().to_numpy(),
        cells,
        names["time"],
        "unparseable date: {v!r} (expected YYYY-MM-DD HH:MM[:SS])",
        profile,
    )
    dup = profile.duplicated(keep="first").to_numpy() & ~check.refused
    _flag_values(check, dup, cells, names["profile_id"], "duplicate profile id {v!r}", None)

    aa = number("aa")
    instrument = text("instrument").str.lower()
    instrument = instrument.where(~instrument.str.startswith("uvp6"), "uvp6").where(
        ~instrument.str.startswith("uvp5"), "uvp5"
    )
    undivided = (instrument.to_numpy() == "uvp6") & (aa > 0.1)
    if undivided.any():
        logger.info(
            "%s: %d UVP6 profile(s) with aa > 0.1 (not yet divided by 10^6 as EcoPart "
            "stores it); dividing by 10^6",
            url,
            int(undivided.sum()),
        )
        aa = np.where(undivided, aa / 1e6, aa)
    pixel = number("pixel_size_mm")
    pixel = np.where(pixel > 1.0, pixel / 1000.0, pixel)  # UVP6 writes µm/px, UVP5 mm/px
    offset = number("depth_offset_m")
    if style == "raw" and names["depth_offset_m"] == "default_depthoffset":
        fallback = "acq_depthoffset"
        if fallback in cells:
            offset = np.where(np.isnan(offset), to_float(cells[fallback])[0], offset)
    organized = pd.array([pd.NA] * len(cells), dtype="boolean")
    if names.get("organized_by_depth"):
        flag_text = text("organized_by_depth").str.lower()
        organized = pd.array(
            [True if v == "true" else False if v == "false" else pd.NA for v in flag_text],
            dtype="boolean",
        )
    table = pd.DataFrame(
        {
            "profile_id": profile,
            "lat": lat,
            "lon": lon,
            "time": time,
            "instrument": instrument,
            "aa": aa,
            "exp": number("exp"),
            "volimage_l": number("volimage_l"),
            "pixel_size_mm": pixel,
            "depth_offset_m": offset,
            "organized_by_depth": organized,
            **{
                key: text(key)
                for key in (
                    "project",
                    "cruise",
                    "station",
                    "raw_filename",
                    "particle_file",
                    "plankton_file",
                )
            },
            "summary_line": cells["_line"].to_numpy(),
        }
    ).astype(SUMMARY_META.dtypes.to_dict())
    res = check.result(table)
    # Why each refused profile was refused, so its PAR rows can say it.
    accepted = set(res.accepted["profile_id"])
    at = raw.header.index(names["profile_id"])
    bad: dict[str, str] = {}
    for line, reason, text_line in res.quarantine[["line", "reason", "raw"]].itertuples(
        index=False
    ):
        fields = text_line.split("\t")
        pid = fields[at].strip().strip('"').strip() if len(fields) > at else ""
        if pid and pid not in accepted:
            bad.setdefault(pid, f"metadata summary {url}:{line}: {reason}")
    if len(res.quarantine):
        logger.warning(
            "%s: %d metadata summary row(s) quarantined; their profiles' PAR rows will be too",
            url,
            len(res.quarantine),
        )
    logger.info("%s: %s metadata summary, %d profile(s)", url, style, len(res.accepted))
    return res, bad


def _summary_style(raw: RawTable) -> str:
    if "profileid" in raw.header:
        return "raw"
    if "profile" in raw.header or "Profile" in raw.header:
        return "export"
    raise InputFormatError(
        f"{raw.url}:1: not an EcoPart metadata summary (no 'profile' or 'profileid' "
        f"column); columns found: {_show_columns(raw.header)}. Pass the "
        "'*_Export_metadata_summary.tsv' of the export as metadata_url."
    )


def _parse_time(values: pd.Series) -> pd.Series:
    time = pd.to_datetime(values, format="ISO8601", errors="coerce", utc=True)
    retry = time.isna() & values.str.fullmatch(r"\d{14}")
    if retry.any():
        time[retry] = pd.to_datetime(values[retry], format="%Y%m%d%H%M%S", utc=True)
    return time.astype("datetime64[ns, UTC]")


def _show_columns(header: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(repr(h) for h in header[:limit])
    return shown + (f", ... ({len(header)} in all)" if len(header) > limit else "")


def _flag_values(
    check: RowChecker,
    mask: np.ndarray,
    cells: pd.DataFrame,
    column: str,
    reason: str | Sequence[str],
    profile: pd.Series | None,
) -> None:
    """Flag rows, formatting ``reason`` with the cell's value ``{v!r}``, per row."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return
    values = cells[column].to_numpy() if column in cells else np.full(len(mask), "")
    reasons = np.full(len(mask), "", dtype=object)
    for i in np.flatnonzero(mask):
        text = reason if isinstance(reason, str) else reason[i]
        text = text.format(v=str(values[i]).strip()) if "{v" in text else text
        reasons[i] = f"profile {profile.iat[i]!r}: {text}" if profile is not None else text
    check.flag(mask, column, reasons)


# ------------------------------------------------------------------ finding the summary


def _find_summary(first_url: str, *, storage_options: Mapping[str, Any] | None, kind: str) -> str:
    """Find the ``*_Export_metadata_summary.tsv`` beside ``first_url``."""
    folder = parent_url(first_url)
    head, sep, tail = folder.partition("::")
    prefix = head if head.endswith("://") else head.rstrip("/") + "/"
    pattern = f"{prefix}{_SUMMARY_GLOB}{sep}{tail}"
    fs, path = url_to_fs(pattern, **dict(storage_options or {}))
    matches = sorted(fs.glob(path))
    proto = head.split("://", 1)[0] + "://" if "://" in head else ""
    urls = [f"{proto}{m}" if proto and not m.startswith(proto) else m for m in matches]
    urls = [f"{u}{sep}{tail}" for u in urls]
    if not urls:
        raise InputFormatError(
            f"{first_url}: no '{_SUMMARY_GLOB.rstrip('*')}' in its folder {folder!r}; EcoPart "
            f"writes one with every {kind} export (keep it beside the PAR files) or pass "
            "metadata_url='.../<export>_Export_metadata_summary.tsv'."
        )
    stamp = _export_stamp(_basename(first_url))
    chosen = [u for u in urls if stamp and stamp in _basename(u)] or urls
    if len(chosen) > 1:
        raise InputFormatError(
            f"{first_url}: {len(chosen)} metadata summaries in {folder!r} "
            f"({', '.join(_basename(u) for u in chosen)}); pass metadata_url= to choose one."
        )
    logger.info("metadata summary found for %s: %s", first_url, chosen[0])
    return chosen[0]


def _export_stamp(name: str) -> str | None:
    """``export_detailed_20210201_11_31_PAR_x.tsv`` -> ``20210201_11_31`` (or None)."""
    m = re.search(r"(?<!\d)\d{8}_\d{2}_\d{2}(?!\d)", name)
    return m.group(0) if m else None


def _basename(url: str) -> str:
    head = url.partition("::")[0]
    head = head.split("://", 1)[-1]
    return posixpath.basename(head.rstrip("/"))


def _load_summary(
    urls: Sequence[str],
    metadata_url: str | None,
    storage_options: Mapping[str, Any] | None,
    encoding: str | None,
    kind: str,
) -> tuple[str, pd.DataFrame, dict[str, str]]:
    url = metadata_url or _find_summary(urls[0], storage_options=storage_options, kind=kind)
    res, bad = _read_summary(url, storage_options=storage_options, encoding=encoding)
    return url, res.accepted.set_index("profile_id", drop=False), bad


def _missing_profile_reason(pid: str, summary_url: str, bad: Mapping[str, str]) -> str:
    if pid in bad:
        return f"profile {pid!r} has no valid metadata ({bad[pid]})"
    return (
        f"profile {pid!r} is not in the metadata summary {summary_url}; pass the summary "
        "of the same export as metadata_url="
    )


# ----------------------------------------------------------------------- PAR exports


def read_par_export(
    urls: str | Sequence[str],
    *,
    metadata_url: str | None = None,
    size_classes: SizeClasses | None = None,
    storage_options: Mapping[str, Any] | None = None,
    encoding: str | None = None,
) -> ReadResult:
    """Read EcoPart detailed or reduced PAR exports into the particles table, lazily.

    One file per profile (``*_PAR_<profile>.tsv``) or ``*_PAR_Aggregated.tsv`` (with a
    ``Project`` column); ``Profile`` or lower-case ``profile``. Counts are
    concentration x ``Sampled volume [L]``, rounded to the nearest integer when within
    10^-6 (relative), kept as floats otherwise.

    Parameters
    ----------
    urls : str or sequence of str
        Files, fsspec URLs or glob patterns (one dask task per file).
    metadata_url : str, optional
        The export's ``*_Export_metadata_summary.tsv``; by default the one in the folder
        of the first file (same export time stamp preferred).
    size_classes : {"detailed", "reduced"}, optional
        Class set of the output; by default detected from the first file's header (45
        classes: detailed, 15: reduced). A file of the other set is quarantined whole.
    storage_options : mapping, optional
        Passed to fsspec.
    encoding : str, optional
        ``None`` (default) detects UTF-8 or latin-1 per file; an explicit encoding is
        strict (undecodable lines are quarantined).

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
    urls = expand_urls(urls, storage_options=storage_options)
    if not urls:
        raise InputFormatError("read_par_export: no input file given (the URL list is empty).")
    summary_url, summary, bad = _load_summary(
        urls, metadata_url, storage_options, encoding, "detailed/reduced"
    )
    if size_classes is None:
        size_classes = _sniff_size_classes(urls, storage_options=storage_options)
    elif size_classes not in ("detailed", "reduced"):
        raise InputFormatError(
            f"size_classes={size_classes!r} is not a class set; valid: 'detailed', 'reduced'."
        )
    parse = functools.partial(
        _parse_par_export,
        summary=summary,
        bad_profiles=bad,
        summary_url=summary_url,
        size_classes=size_classes,
        storage_options=dict(storage_options) if storage_options else None,
        encoding=encoding,
    )
    return read_many(urls, parse, particles_meta(size_classes))


def _class_set(header: Sequence[str]) -> tuple[SizeClasses | None, dict[str, int]]:
    """Detect the class set from count-concentration headers: (kind, column -> index)."""
    # "Âµ": a UTF-8 "µ" decoded as latin-1 (a UTF-8 file with one stray latin-1 byte).
    found = [(h, sizeclasses.parse_export_label(h.replace("Âµ", "µ"))) for h in header]
    found = [(h, edges) for h, edges in found if edges is not None]
    for kind in ("detailed", "reduced"):
        edges = sizeclasses.edges_mm(kind)
        index: dict[str, int] = {}
        for h, (lo, hi) in found:
            i = int(np.argmin(np.abs(edges[:-1] - lo)))
            hi_ok = (math.isinf(hi) and math.isinf(edges[i + 1])) or math.isclose(
                hi, edges[i + 1], rel_tol=1e-6
            )
            if math.isclose(lo, edges[i], rel_tol=1e-6) and hi_ok:
                index[h] = i
        if len(index) == len(found) == len(edges) - 1:
            return kind, index  # type: ignore[return-value]
    return None, {}


def _sniff_size_classes(
    urls: Sequence[str], *, storage_options: Mapping[str, Any] | None
) -> SizeClasses:
    for url in urls:
        try:
            with fsspec.open(url, "rb", compression="infer", **dict(storage_options or {})) as f:
                line = f.readline()
        except (OSError, EOFError, ValueError):
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
    raw = tokenize(read_bytes(url, storage_options=storage_options), url, encoding=encoding)
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
    unknown = ~profile.isin(summary.index).to_numpy() & (profile.to_numpy() != "")
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
    for col, i in class_index.items():
        conc, bad = to_float(cells[col])
        _flag_values(check, bad, cells, col, "not a number: {v!r} (# l-1 expected)", profile)
        _flag_values(check, conc < 0, cells, col, "negative concentration {v!r}", profile)
        counts[:, i] = conc
    counts *= volume[:, None]
    rounded = np.round(counts)
    close = np.abs(counts - rounded) <= _ROUND_RTOL * np.maximum(np.abs(rounded), 1e-3)
    counts = np.where(close, rounded, counts)

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
    is_timed = profile.isin(timed).to_numpy()
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


# ---------------------------------------------------------------------- raw exports


@dataclass
class _RawFileResult(FileResult):
    """A raw PAR file's result: ``accepted`` holds bins, the stats count input lines."""

    lines_accepted: int = 0

    @property
    def stats(self) -> pd.DataFrame:
        """One-row stats frame counting *lines* (read = used + quarantined)."""
        frame = FileResult.stats.fget(self)  # type: ignore[attr-defined]
        frame["rows_accepted"] = self.lines_accepted
        return frame


def read_par_raw(
    urls: str | Sequence[str],
    *,
    metadata_url: str | None = None,
    size_classes: SizeClasses = "detailed",
    bin_m: float = 5.0,
    storage_options: Mapping[str, Any] | None = None,
    encoding: str | None = None,
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
        Files, fsspec URLs or glob patterns (one dask task per file).
    metadata_url : str, optional
        The raw export's ``*_Export_metadata_summary.tsv`` (90 columns); by default the
        one in the folder of the first file.
    size_classes : {"detailed", "reduced"}
        Class set of the output.
    bin_m : float
        Depth bin height in metres (EcoPart: 5).
    storage_options : mapping, optional
        Passed to fsspec.
    encoding : str, optional
        ``None`` (default) detects UTF-8 or latin-1; explicit is strict.

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
    urls = expand_urls(urls, storage_options=storage_options)
    if not urls:
        raise InputFormatError("read_par_raw: no input file given (the URL list is empty).")
    if size_classes not in ("detailed", "reduced"):
        raise InputFormatError(
            f"size_classes={size_classes!r} is not a class set; valid: 'detailed', 'reduced'."
        )
    if not (bin_m > 0 and math.isfinite(bin_m)):
        raise InputFormatError(f"bin_m={bin_m!r}: the depth bin height must be > 0 metres.")
    summary_url, summary, bad = _load_summary(urls, metadata_url, storage_options, encoding, "raw")
    parse = functools.partial(
        _parse_par_raw,
        summary=summary,
        bad_profiles=bad,
        summary_url=summary_url,
        size_classes=size_classes,
        bin_m=float(bin_m),
        storage_options=dict(storage_options) if storage_options else None,
        encoding=encoding,
    )
    return read_many(urls, parse, particles_meta(size_classes))


def _raw_profile(url: str, summary: pd.DataFrame) -> str | None:
    name = _basename(url)
    plain = re.sub(r"\.(gz|bz2|xz|zst)$", "", name)
    by_file = summary.index[summary["particle_file"].to_numpy() == plain]
    if len(by_file):
        return str(by_file[0])
    m = _RAW_NAME.match(plain)
    if not m:
        return None
    head = m["head"]
    hits = [p for p in summary.index if head == p or head.endswith("_" + p)]
    return max(hits, key=len) if hits else None


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
) -> FileResult:
    """Parse one raw PAR export file into 5 m bins (module level: picklable)."""
    raw = tokenize(read_bytes(url, storage_options=storage_options), url, encoding=encoding)
    cells = raw.cells
    check = RowChecker(raw)
    meta = particles_meta(size_classes)

    def done() -> FileResult:
        res = check.result(cells)
        return _RawFileResult(url, meta.copy(), res.quarantine, res.rows_read, lines_accepted=0)

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
    pid = _raw_profile(url, summary)
    if pid is None:
        m = _RAW_NAME.match(_basename(url))
        guess = m["head"].split("_", 1)[-1] if m else _basename(url)
        check.flag_all("", _missing_profile_reason(guess, summary_url, bad_profiles))
        return done()
    info = summary.loc[pid]
    by_depth = info["organized_by_depth"]
    if pd.notna(by_depth) and not bool(by_depth):
        check.flag_all(
            "",
            f"profile {pid!r} is a time-organised sample (organizedbydeepth False): it has no "
            "depth bins and is not part of the particles table",
        )
        return done()
    for key, col in (("volimage_l", "acq_volimage"), ("aa", "acq_aa"), ("exp", "acq_exp")):
        if not (info[key] > 0):
            check.flag_all(
                "",
                f"profile {pid!r}: {col} is {info[key]} in the metadata summary "
                f"{summary_url}; it must be > 0 to compute volumes and sizes",
            )
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
        }
    )
    table = pd.concat([table, pd.DataFrame(counts, columns=list(meta.columns[6:]))], axis=1)
    res = check.result(cells)
    return _RawFileResult(url, table, res.quarantine, res.rows_read, lines_accepted=n_ok)


# ------------------------------------------------------------------------- dispatch

_SUPPORTED = (
    "detailed/reduced PAR exports ('*_PAR_<profile>.tsv', '*_PAR_Aggregated.tsv') and raw "
    "PAR exports ('*_PAR_raw_*.tsv'), optionally .gz or inside a zip:// archive"
)


def _kind_of(url: str) -> str:
    name = re.sub(r"\.(gz|bz2|xz|zst)$", "", _basename(url))
    if "_PAR_raw_" in name and name.endswith(".tsv"):
        return "raw"
    if "_PAR_" in name and name.endswith(".tsv") and "_odv" not in name:
        return "export"
    if "_Export_metadata_summary" in name:
        what = "a metadata summary (read beside the PAR files, or pass it as metadata_url=)"
    elif "_ZOO_" in name:
        what = "a ZOO (plankton) export"
    elif "_CTD_" in name:
        what = "a CTD export"
    elif "_odv" in name:
        what = "an ODV export"
    else:
        what = "not an EcoPart PAR export by its name"
    raise InputFormatError(f"{url}: {what}; read_ecopart reads {_SUPPORTED}. Remove it from urls.")


def read_ecopart(
    urls: str | Iterable[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> ReadResult:
    """Read EcoPart PAR exports of any supported kind, choosing the reader by file name.

    ``*_PAR_raw_*.tsv`` go to :func:`read_par_raw`, other ``*_PAR_*.tsv`` (per profile
    or aggregated, detailed or reduced) to :func:`read_par_export`; both kinds together
    are concatenated (they give the same table). ZOO, CTD, ODV files and metadata
    summaries are refused.

    Parameters
    ----------
    urls : str or iterable of str
        Files, fsspec URLs or glob patterns.
    storage_options : mapping, optional
        Passed to fsspec.
    **kwargs
        Options of the readers (``metadata_url``, ``encoding``, ``size_classes``,
        ``bin_m``); each reader gets those it knows. Leave ``metadata_url`` unset when
        mixing raw and detailed files: each kind then finds its own summary.

    Returns
    -------
    ReadResult
        As :func:`read_par_export`.

    Raises
    ------
    InputFormatError
        When a file is of another kind (naming the file and the supported kinds), no
        file is given, or an option is unknown.
    """
    urls = expand_urls(urls, storage_options=storage_options)
    if not urls:
        raise InputFormatError("read_ecopart: no input file given (the URL list is empty).")
    known = {"metadata_url", "encoding", "size_classes", "bin_m"}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise InputFormatError(
            f"read_ecopart: unknown option(s) {unknown}; valid: {sorted(known)}."
        )
    kinds = {url: _kind_of(url) for url in urls}
    raw_urls = [u for u in urls if kinds[u] == "raw"]
    export_urls = [u for u in urls if kinds[u] == "export"]
    logger.info(
        "read_ecopart: %d detailed/reduced and %d raw PAR file(s)", len(export_urls), len(raw_urls)
    )
    results = []
    if export_urls:
        opts = {
            k: v for k, v in kwargs.items() if k in {"metadata_url", "encoding", "size_classes"}
        }
        results.append(read_par_export(export_urls, storage_options=storage_options, **opts))
    if raw_urls:
        opts = dict(kwargs)
        if export_urls and opts.get("size_classes") is None:
            opts["size_classes"] = _meta_kind(results[0].accepted)
        opts = {k: v for k, v in opts.items() if v is not None}
        results.append(read_par_raw(raw_urls, storage_options=storage_options, **opts))
    if len(results) == 1:
        return results[0]
    if list(results[0].accepted.columns) != list(results[1].accepted.columns):
        raise InputFormatError(
            "read_ecopart: the PAR exports and raw files give different class sets; pass "
            "size_classes= or read them separately."
        )
    return ReadResult(
        accepted=dd.concat([r.accepted for r in results]),
        quarantine=dd.concat([r.quarantine for r in results]),
        stats=dd.concat([r.stats for r in results]),
    )


def _meta_kind(frame: dd.DataFrame) -> SizeClasses:
    return "reduced" if len(frame.columns) == 6 + 15 else "detailed"
