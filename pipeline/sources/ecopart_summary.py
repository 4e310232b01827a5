"""EcoPart metadata summaries: reading ``*_Export_metadata_summary.tsv`` and finding it.

The sub-step of the EcoPart reader (:mod:`pipeline.sources.ecopart`) that gives every
profile its position, time and calibration: :func:`read_metadata_summary` reads either
style (detailed/reduced export summary or 90-column raw summary), eagerly (it is small);
the private helpers find the summary beside the PAR files and say why a profile has no
valid metadata. The choices made are listed in :mod:`pipeline.sources.ecopart`.
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from fsspec.core import url_to_fs

from pipeline.errors import InputFormatError
from pipeline.io import parent_url, read_bytes
from pipeline.sources.archive import ArchiveFile, inventory_frame, list_files
from pipeline.sources.table import FileResult, RawTable, RowChecker, to_float, tokenize

__all__ = ["SUMMARY_META", "read_metadata_summary"]

# One logger for the whole EcoPart reader: its name, "pipeline.sources.ecopart", is the
# one callers filter on.
logger = logging.getLogger(__name__)

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
_SUMMARY_GLOB = "*_Export_metadata_summary.tsv*"


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
    found: Sequence[ArchiveFile] = (),
) -> tuple[str, pd.DataFrame, dict[str, str]]:
    url = (
        metadata_url
        or _pick_summary(urls[0], found, kind)
        or _find_summary(urls[0], storage_options=storage_options, kind=kind)
    )
    res, bad = _read_summary(url, storage_options=storage_options, encoding=encoding)
    summary = res.accepted.set_index("profile_id", drop=False)
    summary[CRUISE_OF_PARTICLES] = _cruise_or_project(summary, url)
    return url, summary, bad


#: Column of the loaded summary holding each profile's ``cruise`` in the particles table.
CRUISE_OF_PARTICLES = "_particles_cruise"


def _particles_cruise(summary: pd.DataFrame) -> pd.Series:
    """Each profile's ``cruise`` for the particles table (made by :func:`_load_summary`)."""
    if CRUISE_OF_PARTICLES in summary:
        return summary[CRUISE_OF_PARTICLES]
    return _cruise_or_project(summary, "metadata summary")  # a summary loaded otherwise


def _cruise_or_project(summary: pd.DataFrame, url: str) -> pd.Series:
    """Give each profile its cruise, or its EcoPart project where the cruise is empty."""
    cruise = summary["cruise"].astype(str).str.strip()
    project = summary["project"].astype(str).str.strip()
    empty = (cruise == "") | summary["cruise"].isna()
    if empty.any():
        logger.info(
            "%s: %d of %d profile(s) without a cruise: their EcoPart project stands for it",
            url,
            int(empty.sum()),
            len(summary),
        )
    return cruise.where(~empty, project.where(summary["project"].notna(), ""))


def _missing_profile_reason(pid: str, summary_url: str, bad: Mapping[str, str]) -> str:
    if pid in bad:
        return f"profile {pid!r} has no valid metadata ({bad[pid]})"
    return (
        f"profile {pid!r} is not in the metadata summary {summary_url}; pass the summary "
        "of the same export as metadata_url="
    )


# ------------------------------------------------------------------ what an export holds

#: Kinds of file an EcoPart export holds, as :func:`_file_kind` names them.
PAR_RAW, PAR_EXPORT, SUMMARY = "raw PAR export", "PAR export", "metadata summary"
_NOT_READ = "not read by this reader"
_UNKNOWN = "unknown: not read"


def _file_kind(url: str) -> str:
    """Kind of an EcoPart export file, from its name."""
    name = re.sub(r"\.(gz|bz2|xz|zst)$", "", _basename(url))
    if "_Export_metadata_summary" in name:
        return SUMMARY
    if "_PAR_raw_" in name and name.endswith(".tsv"):
        return PAR_RAW
    if "_odv" in name.lower():
        return "ODV export"
    if "_PAR_" in name and name.endswith(".tsv"):
        return PAR_EXPORT
    if "_ZOO_" in name:
        return "ZOO export"
    if "_CTD_" in name:
        return "CTD export"
    return "unknown"


def _action(kind: str) -> str:
    if kind in (PAR_RAW, PAR_EXPORT):
        return "read"
    if kind == SUMMARY:
        return "metadata summary: not used"
    return _UNKNOWN if kind == "unknown" else _NOT_READ


def _sort_files(
    urls: str | Sequence[str] | Sequence[ArchiveFile],
    storage_options: Mapping[str, Any] | None,
    kinds: Sequence[str],
) -> tuple[list[ArchiveFile], list[ArchiveFile], pd.DataFrame]:
    """Split the inputs into the files to read, the summaries found and an inventory.

    Files found in a folder, glob or archive are read when their name says they are of one
    of ``kinds``; files named as they are also when their name is another PAR kind's or
    unknown (a wrong one is then quarantined whole). ZOO, CTD and ODV exports and summaries
    are never read as data. Everything not read is listed in the inventory, never fatal.
    """
    if isinstance(urls, str):
        urls = [urls]
    items = [u for u in urls if isinstance(u, ArchiveFile)]
    names = [u for u in urls if not isinstance(u, ArchiveFile)]
    if names:
        items += list_files(names, storage_options=storage_options)
    read: list[ArchiveFile] = []
    summaries: list[ArchiveFile] = []
    rows = []
    for f in items:
        kind = _file_kind(f.url)
        if kind in kinds or (not f.expanded and kind in (PAR_RAW, PAR_EXPORT, "unknown")):
            read.append(f)
            rows.append((f, kind, "read"))
            continue
        if kind == SUMMARY:
            summaries.append(f)
        rows.append((f, kind, _action(kind)))
    return read, summaries, inventory_frame(rows)


def _pick_summary(first: str, summaries: Sequence[ArchiveFile], kind: str) -> str | None:
    """Pick the summary, among those found, that goes with ``first`` (None: none fits)."""
    if not summaries:
        return None
    folder, stamp = parent_url(first), _export_stamp(_basename(first))
    want_raw = kind == "raw"

    def score(f: ArchiveFile) -> tuple[int, int, int]:
        name = _basename(f.url)
        return (
            int(parent_url(f.url) == folder),
            int(bool(stamp) and stamp in name),
            int(("export_raw" in name) == want_raw),
        )

    ranked = sorted(summaries, key=score, reverse=True)
    if len(ranked) > 1 and score(ranked[0]) == score(ranked[1]):
        return None  # ambiguous: let _find_summary say so
    return ranked[0].url


def _mark_used(inventory: pd.DataFrame, url: str) -> pd.DataFrame:
    out = inventory.copy()
    out.loc[out["file"] == url, "action"] = "metadata summary: used"
    return out
