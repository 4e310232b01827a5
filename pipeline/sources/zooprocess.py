"""ZooProcess project files: sample and scan headers, ``.pid`` files, measurement tables.

A ZooScan project processed by ZooProcess keeps, beside the vignettes, the metadata of
its net samples and the measurements of its objects in files EcoTaxa never sees:

- ``Zooscan_meta/zooscan_sample_header_table.csv`` (``;``-separated, one row per net
  sample), ``metadata.txt`` and ``raw/*_meta.txt`` (``Key= value`` lines, one sample),
  and the ``[Sample]`` section of each ``.pid``: read by :func:`read_zooscan_samples`
  into one row per sample with positions in decimal degrees;
- ``Zooscan_meta/zooscan_scan_header_table.csv`` (one row per scan, i.e. per size
  fraction and Motoda subsample): :func:`read_zooscan_scans`;
- ``*_dat1.pid`` (INI-like sections, then a ``[Data]`` table of measurements):
  :func:`read_pid`, and :func:`pid_objects` turns it into the canonical objects table of
  :func:`pipeline.sources.ecotaxa.read_ecotaxa` (unclassified objects, no image), so that
  a scan ZooProcess measured can be counted before it reaches EcoTaxa;
- ``*_meas.txt`` / ``meas_*.csv`` (ImageJ "Results" tables, tab-separated, first column
  unnamed): :func:`read_measurements`.

Features are named as in the objects table (``Perim.`` -> ``perim``, ``%Area`` ->
``pct_area``), so ZooProcess's own measurements and EcoTaxa's columns line up.

Developer note
--------------
*Choices made and why*:

- **Positions** are written ``DD.MMmm`` (degrees, then minutes as the decimals:
  ``47.5076`` = 47° 50.76' = 47.846°) and **west longitudes positive**: the APERO 2023
  header table gives ``47.5076 / 15.2622`` for the sample whose EcoTaxa import (made by
  ZooProcess from the same header) has ``object_lat 47.846, object_lon -15.437``, and its
  ``latitude_end / longitude_end`` ``47.4914 / 15.2951`` match the import's
  ``object_lat_end / object_lon_end`` ``47.819 / -15.4918`` too. ``west_positive=True``
  is therefore the default; a project that writes east-positive longitudes passes False.
  Minutes of 60 or more are refused (not degrees.minutes).
- **Dates** ``YYYYMMDD-HHMM`` are UTC, like EcoTaxa's ``object_date``/``object_time``
  written from them (``20230626-0828`` -> the import's ``20230626 08:28:00.000``).
- **Missing codes** 9999/99999/999999 and empty cells are NaN in numeric columns.
- **Volume**: ``Vol`` is the water filtered in m³, ``Fracnb`` (scan table, metadata) or
  ``SubPart`` (``.pid`` ``[Subsample]``) the Motoda subsample denominator, EcoTaxa's
  ``acq_sub_part``: the volume a scanned object stands for is ``Vol x 1000 / SubPart``
  litres, as in the EcoTaxa reader.
- **Errors**: these files are small metadata; a malformed line or value raises
  :class:`~pipeline.errors.InputFormatError` naming the file, line and column.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import InputFormatError
from pipeline.io import read_bytes
from pipeline.sources.ecotaxa import objects_meta
from pipeline.sources.ecotaxa_columns import _feature_name
from pipeline.sources.table import MISSING_SENTINELS, conform, to_float

__all__ = [
    "SAMPLE_COLUMNS",
    "PidFile",
    "degrees_minutes",
    "pid_objects",
    "read_measurements",
    "read_pid",
    "read_zooscan_samples",
    "read_zooscan_scans",
]

logger = logging.getLogger(__name__)

#: Columns of :func:`read_zooscan_samples`, in order (then the file's other columns,
#: lower case, as text).
SAMPLE_COLUMNS: tuple[str, ...] = (
    "sample_id",
    "lat",
    "lon",
    "time",
    "lat_end",
    "lon_end",
    "depth_min_m",
    "depth_max_m",
    "volume_m3",
    "bottom_depth_m",
    "station_id",
    "ship",
    "program",
    "net_type",
    "net_mesh_um",
    "net_surf_m2",
    "comment",
)
# canonical name <- header key (lower case), and whether it is a number
_SAMPLE_KEYS: dict[str, tuple[str, bool]] = {
    "sample_id": ("sampleid", False),
    "depth_min_m": ("zmin", True),
    "depth_max_m": ("zmax", True),
    "volume_m3": ("vol", True),
    "bottom_depth_m": ("depth", True),
    "station_id": ("stationid", False),
    "ship": ("ship", False),
    "program": ("scientificprog", False),
    "net_type": ("nettype", False),
    "net_mesh_um": ("netmesh", True),
    "net_surf_m2": ("netsurf", True),
    "comment": ("sample_comment", False),
}
_POSITIONS = (("lat", "latitude"), ("lon", "longitude"), ("lat_end", "latitude_end"))
_POSITIONS += (("lon_end", "longitude_end"),)
_SCAN_KEYS: dict[str, tuple[str, bool]] = {
    "scan_id": ("scanid", False),
    "sample_id": ("sampleid", False),
    "frac_id": ("fracid", False),
    "frac_min_um": ("fracmin", True),
    "frac_max_um": ("fracsup", True),
    "sub_part": ("fracnb", True),
    "sub_method": ("submethod", False),
    "operator": ("scanop", False),
}
_KEY_VALUE = re.compile(r"^\s*([^=\[\]]+?)\s*=\s*(.*?)\s*$")


def degrees_minutes(values: Any) -> np.ndarray:
    """Convert ZooProcess ``DD.MMmm`` positions (degrees.minutes) to decimal degrees.

    The integer part is degrees, the first two decimals whole minutes and the others
    their decimals; the sign applies to the whole value. NaN stays NaN.

    Parameters
    ----------
    values : float or array-like of float
        Positions as written (``47.5076`` = 47° 50.76').

    Returns
    -------
    numpy.ndarray of float64
        Decimal degrees, same shape.

    Raises
    ------
    ValueError
        When a value has 60 or more minutes (it is not in degrees.minutes).

    Examples
    --------
    >>> degrees_minutes([47.5076, 15.2622, -0.3]).round(6).tolist()
    [47.846, 15.437, -0.5]
    """
    x = np.asarray(values, dtype="float64")
    mag = np.abs(x)
    deg = np.floor(mag)
    # round away the float noise of the decimals (47.5076 -> 50.76 minutes, not 50.7599…)
    minutes = np.round((mag - deg) * 100.0, 9)
    bad = minutes >= 60.0
    if np.any(bad):
        raise ValueError(
            f"{float(x[bad].ravel()[0])!r} has {minutes[bad].ravel()[0]:g} minutes: not a "
            "degrees.minutes position (DD.MMmm, minutes below 60)"
        )
    return np.sign(x) * (deg + minutes / 60.0)


def _text(data: bytes, url: str) -> list[str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _numbers(frame: pd.DataFrame, names: Sequence[str], url: str, lines: Sequence[int]) -> None:
    """Convert ``names`` of ``frame`` (text) to float in place; raise naming the cell."""
    for name in names:
        values, bad = to_float(frame[name].astype(str), missing=(*MISSING_SENTINELS, "nan"))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputFormatError(
                f"{url}:{lines[i]}: column {name!r} is {frame[name].iloc[i]!r}, expected a "
                "number (or empty, or a missing code 9999/99999/999999)."
            )
        frame[name] = values


def _split_table(
    lines: list[str], url: str, sep: str
) -> tuple[list[str], list[list[str]], list[int]]:
    """Split a delimited table with a header line: header, rows of cells, line numbers."""
    numbered = [(k, line) for k, line in enumerate(lines, start=1) if line.strip()]
    if not numbered:
        raise InputFormatError(f"{url}: the file is empty (no header line).")
    header = numbered[0][1].split(sep)
    rows, where = [], []
    for k, line in numbered[1:]:
        cells = line.split(sep)
        if len(cells) != len(header):
            raise InputFormatError(
                f"{url}:{k}: {len(cells)} fields, the header has {len(header)} "
                f"({sep!r}-separated, one value per column)."
            )
        rows.append(cells)
        where.append(k)
    return header, rows, where


def _semicolon_table(lines: list[str], url: str) -> tuple[pd.DataFrame, list[int]]:
    """Split a ``;``-separated header table: text cells (lower-case names), line numbers."""
    header, rows, where = _split_table(lines, url, ";")
    names = [h.strip().lower() for h in header]
    cells = [[c.strip() for c in row] for row in rows]
    return pd.DataFrame(cells, columns=names, dtype=str), where


def _key_values(lines: Sequence[tuple[int, str]]) -> dict[str, tuple[str, int]]:
    """``Key= value`` lines into {lower-case key: (value, line)}; other lines are skipped."""
    out: dict[str, tuple[str, int]] = {}
    for k, line in lines:
        match = _KEY_VALUE.match(line)
        if match:
            out.setdefault(match.group(1).strip().lower(), (match.group(2), k))
    return out


def _samples_frame(
    frame: pd.DataFrame,
    lines: list[int],
    url: str,
    *,
    west_positive: bool,
    key_lines: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """Canonical sample rows from header text cells (lower-case ZooProcess keys).

    ``lines`` are the rows' line numbers; ``key_lines`` the line of each key of a
    one-sample ``Key= value`` file (errors name it).
    """
    missing = [key for key in ("sampleid", "latitude", "longitude") if key not in frame]
    if missing:
        raise InputFormatError(
            f"{url}: no {', '.join(repr(m) for m in missing)} field (found: "
            f"{', '.join(list(frame.columns)[:10])}); is this a ZooProcess sample header?"
        )
    out = pd.DataFrame(index=frame.index)
    for name, (key, numeric) in _SAMPLE_KEYS.items():
        out[name] = frame[key] if key in frame else ""
        if numeric:
            out[name] = out[name].where(out[name] != "", "nan")
    for name, key in _POSITIONS:
        out[name] = frame[key] if key in frame else ""
    numeric = [n for n, (_, num) in _SAMPLE_KEYS.items() if num] + [n for n, _ in _POSITIONS]
    _numbers(out, numeric, url, lines)
    for name, key in _POSITIONS:
        values = out[name].to_numpy()
        try:
            out[name] = degrees_minutes(values)
        except ValueError as err:
            mag = np.abs(values)
            i = int(np.flatnonzero(np.round((mag - np.floor(mag)) * 100.0, 9) >= 60.0)[0])
            line = (key_lines or {}).get(key, lines[i])
            raise InputFormatError(f"{url}:{line}: column {key!r}: {err}") from err
        if name.startswith("lon") and west_positive:
            out[name] = -out[name]
    for name, limit in (("lat", 90.0), ("lon", 180.0)):
        far = np.abs(out[name].to_numpy()) > limit
        if far.any():
            i = int(np.flatnonzero(far)[0])
            raise InputFormatError(
                f"{url}:{lines[i]}: {name} {out[name].iloc[i]:g} is outside "
                f"[-{limit:g}, {limit:g}] after degrees.minutes conversion."
            )
    dates = frame["date"] if "date" in frame else pd.Series("", index=frame.index)
    time = pd.to_datetime(dates.str.strip(), format="%Y%m%d-%H%M", errors="coerce", utc=True)
    bad = time.isna().to_numpy() & (dates.str.strip() != "").to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputFormatError(
            f"{url}:{lines[i]}: column 'date' is {dates.iloc[i]!r}, expected YYYYMMDD-HHMM."
        )
    out["time"] = time.astype("datetime64[ns, UTC]")
    used = {key for key, _ in _SAMPLE_KEYS.values()} | {key for _, key in _POSITIONS} | {"date"}
    rest = frame[[c for c in frame.columns if c not in used]]
    out = pd.concat([out[list(SAMPLE_COLUMNS)], rest], axis=1).reset_index(drop=True)
    out.attrs["source"] = url
    return out


def read_zooscan_samples(
    url: str,
    *,
    west_positive: bool = True,
    storage_options: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Read ZooProcess sample metadata into one row per net sample, in decimal degrees.

    Parameters
    ----------
    url : str
        A ``zooscan_sample_header_table.csv`` (``;``-separated), a ``metadata.txt`` or
        ``*_meta.txt`` (``Key= value`` lines), or a ``.pid`` file (its ``[Sample]``
        section); the kind is told from the content.
    west_positive : bool
        Longitudes are written positive to the west (ZooProcess's habit, default True):
        they are negated to east-positive degrees. Pass False for a project that writes
        east-positive longitudes.
    storage_options : mapping, optional
        Passed to fsspec.

    Returns
    -------
    pandas.DataFrame
        :data:`SAMPLE_COLUMNS` (``lat``, ``lon``, ``lat_end``, ``lon_end`` in decimal
        degrees east/north; ``time`` UTC; depths in m; ``volume_m3``), then the file's
        other fields as text. ``attrs["source"]`` is the URL.

    Raises
    ------
    InputFormatError
        When the file is none of these kinds, a line has the wrong number of fields, or
        a number, position or date cannot be read (naming the file, line and column).

    See Also
    --------
    read_zooscan_scans : the scans (fractions, subsamples) of these samples.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "metadata.txt")
    >>> _ = open(path, "w").write("SampleId= s1\\nDate= 20230626-0828\\n"
    ...                           "Latitude= 47.5076\\nLongitude= 15.2622\\nVol= 203.5\\n")
    >>> row = read_zooscan_samples(path).iloc[0]
    >>> [round(float(row[c]), 6) for c in ("lat", "lon", "volume_m3")], str(row["time"])
    ([47.846, -15.437, 203.5], '2023-06-26 08:28:00+00:00')
    """
    lines = _text(read_bytes(url, storage_options=storage_options), url)
    first = next((line.strip() for line in lines if line.strip()), "")
    if ";" in first and "=" not in first:
        frame, where = _semicolon_table(lines, url)
        logger.info("%s: ZooProcess sample header table, %d sample(s)", url, len(frame))
    else:
        numbered = list(enumerate(lines, start=1))
        if first == "PID":
            numbered = _section(numbered, "Sample", url)
        pairs = _key_values(numbered)
        if not pairs:
            raise InputFormatError(
                f"{url}: neither a ';'-separated header table nor 'Key= value' lines; "
                "expected zooscan_sample_header_table.csv, metadata.txt or a .pid file."
            )
        frame = pd.DataFrame({k: [v] for k, (v, _) in pairs.items()}, dtype=str)
        where = [min(k for _, k in pairs.values())]
        return _samples_frame(
            frame,
            where,
            url,
            west_positive=west_positive,
            key_lines={key: k for key, (_, k) in pairs.items()},
        )
    return _samples_frame(frame, where, url, west_positive=west_positive)


def read_zooscan_scans(
    url: str, *, storage_options: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """Read a ZooProcess ``zooscan_scan_header_table.csv``: one row per scan.

    Parameters
    ----------
    url : str
        The ``;``-separated scan header table.
    storage_options : mapping, optional
        Passed to fsspec.

    Returns
    -------
    pandas.DataFrame
        ``scan_id, sample_id, frac_id, frac_min_um, frac_max_um`` (sieve meshes, NaN
        for the 999999 "no upper sieve"), ``sub_part`` (the Motoda subsample
        denominator, EcoTaxa's ``acq_sub_part``), ``sub_method``, ``operator``, then
        the other fields as text.

    Raises
    ------
    InputFormatError
        When a line has the wrong number of fields or a number cannot be read.

    See Also
    --------
    read_zooscan_samples : the samples these scans belong to.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "zooscan_scan_header_table.csv")
    >>> _ = open(path, "w").write("scanid;sampleid;fracid;fracmin;fracsup;fracnb\\n"
    ...                           "s1_d1_1;s1;d1;10000;999999;4\\n")
    >>> read_zooscan_scans(path)[["frac_min_um", "frac_max_um", "sub_part"]].iloc[0].tolist()
    [10000.0, nan, 4.0]
    """
    frame, where = _semicolon_table(
        _text(read_bytes(url, storage_options=storage_options), url), url
    )
    if "scanid" not in frame:
        raise InputFormatError(
            f"{url}: no 'scanid' column (found: {', '.join(list(frame.columns)[:10])}); "
            "is this a ZooProcess zooscan_scan_header_table.csv?"
        )
    out = pd.DataFrame(index=frame.index)
    for name, (key, numeric) in _SCAN_KEYS.items():
        out[name] = frame[key] if key in frame else ("nan" if numeric else "")
    _numbers(out, [n for n, (_, num) in _SCAN_KEYS.items() if num], url, where)
    used = {key for key, _ in _SCAN_KEYS.values()}
    out = pd.concat([out, frame[[c for c in frame.columns if c not in used]]], axis=1)
    out.attrs["source"] = url
    logger.info("%s: ZooProcess scan header table, %d scan(s)", url, len(out))
    return out


@dataclass
class PidFile:
    """A ZooProcess ``.pid`` file: its sections and its measurement table.

    Attributes
    ----------
    url : str
        The file read.
    sections : dict of str to dict of str to str
        ``Key= value`` pairs of each ``[Section]`` (keys as written), ``[Data]`` excluded.
    data : pandas.DataFrame
        The ``[Data]`` table: ``item`` (int), ``label`` and one float column per
        measurement, named as the objects table's features (``perim``, ``pct_area``).
    """

    url: str
    sections: dict[str, dict[str, str]] = field(default_factory=dict)
    data: pd.DataFrame = field(default_factory=pd.DataFrame)

    def value(self, section: str, key: str, default: str = "") -> str:
        """Return the value of ``key`` in ``[section]`` (case-insensitive), or ``default``."""
        pairs = {k.lower(): v for k, v in self.sections.get(section, {}).items()}
        return pairs.get(key.lower(), default)


def _section(numbered: list[tuple[int, str]], name: str, url: str) -> list[tuple[int, str]]:
    """Return the numbered lines of ``[name]`` in a sectioned file, to the next section."""
    out, inside = [], False
    for k, line in numbered:
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            if inside:
                break
            inside = stripped[1:-1].strip().lower() == name.lower()
            continue
        if inside:
            out.append((k, line))
    if not inside and not out:
        raise InputFormatError(f"{url}: no [{name}] section; is this a ZooProcess .pid file?")
    return out


def _measurement_frame(
    header: Sequence[str], rows: Sequence[Sequence[str]], lines: Sequence[int], url: str
) -> pd.DataFrame:
    """ImageJ measurement cells into ``item, label`` and float features (objects names)."""
    names = ["item" if not h.strip() or h.strip() == "!Item" else _feature_name(h) for h in header]
    frame = pd.DataFrame([list(r) for r in rows], columns=names, dtype=str)
    features = [n for n in names if n not in ("item", "label")]
    for name in features:
        values, bad = to_float(frame[name], missing=("", "nan", "NaN"))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputFormatError(
                f"{url}:{lines[i]}: column {header[names.index(name)]!r} is "
                f"{frame[name].iloc[i]!r}, expected a number."
            )
        frame[name] = values
    if "item" in frame:
        frame["item"] = pd.to_numeric(frame["item"], errors="raise").astype("int64")
    return frame


def read_pid(url: str, *, storage_options: Mapping[str, Any] | None = None) -> PidFile:
    """Read a ZooProcess ``.pid`` file: its sections and its ``[Data]`` measurements.

    Parameters
    ----------
    url : str
        The ``*_dat1.pid`` file (``PID`` first line, ``[Section]`` blocks of ``Key= value``
        lines, then ``[Data]``: a ``;``-separated table whose header starts ``!Item``).
    storage_options : mapping, optional
        Passed to fsspec.

    Returns
    -------
    PidFile

    Raises
    ------
    InputFormatError
        When the file has no ``[Data]`` table or a data line has the wrong number of
        fields or a non-numeric measurement (naming the line and column).

    See Also
    --------
    pid_objects : the measurements as the canonical objects table.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x_dat1.pid")
    >>> _ = open(path, "w").write("PID\\n[Sample]\\nSampleId= s1\\n[Data]\\n"
    ...                           "!Item;Label;Area;Perim.\\n1;s1_d1_1;1333;359.77\\n")
    >>> pid = read_pid(path)
    >>> pid.value("Sample", "sampleid"), pid.data.to_dict("records")
    ('s1', [{'item': 1, 'label': 's1_d1_1', 'area': 1333.0, 'perim': 359.77}])
    """
    lines = _text(read_bytes(url, storage_options=storage_options), url)
    sections: dict[str, dict[str, str]] = {}
    current: str | None = None
    header: list[str] | None = None
    rows: list[list[str]] = []
    where: list[int] = []
    for k, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if header is not None:
            cells = stripped.split(";")
            if len(cells) != len(header):
                raise InputFormatError(
                    f"{url}:{k}: {len(cells)} fields in the [Data] table, its header "
                    f"has {len(header)}."
                )
            rows.append(cells)
            where.append(k)
        elif stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1].strip()
            if current.lower() != "data":
                sections.setdefault(current, {})
        elif current is not None and current.lower() == "data" and stripped.startswith("!"):
            header = stripped.split(";")
        elif current is not None:
            match = _KEY_VALUE.match(stripped)
            if match:
                sections[current].setdefault(match.group(1).strip(), match.group(2))
    if header is None:
        raise InputFormatError(
            f"{url}: no [Data] table (a line '!Item;Label;…' after '[Data]'); is this a "
            "ZooProcess .pid file?"
        )
    data = _measurement_frame(header, rows, where, url)
    logger.info("%s: .pid with %d section(s), %d object(s)", url, len(sections), len(data))
    return PidFile(url=url, sections=sections, data=data)


def read_measurements(
    url: str, *, storage_options: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """Read a ZooProcess/ImageJ measurement table (``*_meas.txt``, ``meas_*.csv``).

    Parameters
    ----------
    url : str
        Tab-separated, a header line whose first cell is empty (the ImageJ row number),
        one row per object.
    storage_options : mapping, optional
        Passed to fsspec.

    Returns
    -------
    pandas.DataFrame
        ``item`` (the row number), ``label`` and one float column per measurement,
        named as the objects table's features (``Perim.`` -> ``perim``).

    Raises
    ------
    InputFormatError
        When a line has the wrong number of fields or a measurement is not a number.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "meas_1.csv")
    >>> _ = open(path, "w").write(" \\tLabel\\tArea\\t%Area\\n1\\ts1_d1_1\\t1333\\t15.679\\n")
    >>> read_measurements(path).to_dict("records")
    [{'item': 1, 'label': 's1_d1_1', 'area': 1333.0, 'pct_area': 15.679}]
    """
    lines = _text(read_bytes(url, storage_options=storage_options), url)
    header, rows, where = _split_table(lines, url, "\t")
    return _measurement_frame(header, rows, where, url)


def pid_objects(pid: PidFile, *, west_positive: bool = True) -> pd.DataFrame:
    """Turn a ``.pid`` file into the canonical objects table (unclassified, no image).

    Each ``[Data]`` row becomes an object ``<Label>_<Item>`` (EcoTaxa's ZooScan
    ``object_id``) of sample ``[Sample] SampleId``, acquisition ``<FracId>_<SampleId>``
    (EcoTaxa's ``acq_id``), placed and dated by the ``[Sample]`` section
    (:func:`read_zooscan_samples`), depths ``Zmin``-``Zmax``, ``volume_l = Vol x 1000 /
    SubPart`` (``[Subsample]``; 1 when absent) and ``pixel_size_um = PixSize x 1000``
    (``[Particules_Process]``, mm). ``category``, ``status``, ``hierarchy`` and
    ``image`` are empty: the objects are not classified yet (label them with
    :mod:`pipeline.images.morphology` types, or with a classifier, before counting).
    Only the features ZooProcess measured are filled; those EcoTaxa derives on import
    (``elongation``, ``meanpos``, ``cv``, …) are NaN.

    Parameters
    ----------
    pid : PidFile
        From :func:`read_pid`.
    west_positive : bool
        See :func:`read_zooscan_samples`.

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`pipeline.sources.ecotaxa.objects_meta` for the default
        features (NaN where ZooProcess did not measure one).

    Raises
    ------
    InputFormatError
        When the ``[Sample]`` section lacks the sample id or position, or ``SubPart``
        or ``PixSize`` is not a positive number.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x_dat1.pid")
    >>> _ = open(path, "w").write(
    ...     "PID\\n[Sample]\\nSampleId= s1\\nDate= 20230614-2251\\nLatitude= 48.2584\\n"
    ...     "Longitude= 22.2966\\nZmin= 55\\nZmax= 106\\nVol= 124.5\\n[Fraction]\\n"
    ...     "FracId= d2\\n[Subsample]\\nSubPart= 2\\n[Particules_Process]\\n"
    ...     "PixSize= 0.0106\\n[Data]\\n!Item;Label;Area\\n1;s1_d2_1;1031\\n")
    >>> row = pid_objects(read_pid(path)).iloc[0]
    >>> row["object_id"], row["acq_id"], round(float(row["lon"]), 5), float(row["volume_l"])
    ('s1_d2_1_1', 'd2_s1', -22.49433, 62250.0)
    >>> round(float(row["esd_um"]), 1), float(row["pixel_size_um"])
    (384.1, 10.6)
    """
    frame = pd.DataFrame({k.lower(): [v] for k, v in pid.sections.get("Sample", {}).items()})
    sample = _samples_frame(frame, [0], f"{pid.url} [Sample]", west_positive=west_positive)
    row = sample.iloc[0]
    numbers = {}
    for section, key in (("Subsample", "SubPart"), ("Particules_Process", "PixSize")):
        raw = pid.value(section, key, "1" if key == "SubPart" else "")
        if key == "SubPart" and not pid.value(section, key):
            logger.info("%s: no [Subsample] SubPart: the scan is the whole sample (1)", pid.url)
        value, bad = to_float(pd.Series([raw]))
        if bad[0] or not value[0] > 0:
            raise InputFormatError(
                f"{pid.url}: [{section}] {key} is {raw!r}, expected a positive number"
                + (" (mm per pixel)." if key == "PixSize" else " (the Motoda denominator).")
            )
        numbers[key] = float(value[0])
    data = pid.data
    n = len(data)
    pixel_um = numbers["PixSize"] * 1000.0
    area = data["area"].to_numpy(dtype="float64") if "area" in data else np.full(n, np.nan)
    frac = pid.value("Fraction", "FracId")
    table = pd.DataFrame(
        {
            "object_id": data["label"].astype(str) + "_" + data["item"].astype(str),
            "sample_id": row["sample_id"],
            "acq_id": f"{frac}_{row['sample_id']}" if frac else row["sample_id"],
            "lat": row["lat"],
            "lon": row["lon"],
            "time": row["time"],
            "depth_min_m": row["depth_min_m"],
            "depth_max_m": row["depth_max_m"],
            "category": "",
            "hierarchy": "",
            "status": "",
            "volume_l": row["volume_m3"] * 1000.0 / numbers["SubPart"],
            "area_mm2": area * (pixel_um / 1000.0) ** 2,
            "esd_um": 2.0 * np.sqrt(area / np.pi) * pixel_um,
            "pixel_size_um": pixel_um,
            "subsample_fraction": 1.0,
            "image": "",
        }
    )
    meta = objects_meta()
    features = [c for c in meta.columns if c in data.columns and c not in table.columns]
    table = pd.concat([table, data[features].reset_index(drop=True)], axis=1)
    out = conform(table.reindex(columns=meta.columns), meta)
    out.attrs["source"] = pid.url
    return out
