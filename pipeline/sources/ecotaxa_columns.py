"""EcoTaxa TSV cells into the canonical columns of the objects table.

The column-conversion sub-step of :func:`pipeline.sources.ecotaxa.read_ecotaxa`: each
converter reads the text cells of one file (through :class:`_Rows`), returns one canonical
column (``time``, ``lat``/``lon``, ``status``, ``volume_l``, ``pixel_size_um``,
``subsample_fraction``, the features) and quarantines, through the file's
:class:`~pipeline.sources.table.RowChecker`, the rows whose cells it cannot convert.
:func:`parse_degrees` is public.

Developer note
--------------
The ``_``-prefixed converters are internal to the EcoTaxa reader: only
``pipeline.sources.ecotaxa`` calls them, from its per-file parser. The conventions they
implement (coordinates, time, status, volume, pixel size, subsample fraction,
features) are documented, with
their sources, in the developer note of :mod:`pipeline.sources.ecotaxa`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.sources.table import MISSING_SENTINELS, RawTable, RowChecker, to_float

__all__ = ["parse_degrees"]

logger = logging.getLogger(__name__)

_STATUS = {
    "predicted": "P",
    "validated": "V",
    "dubious": "D",
    "p": "P",
    "v": "V",
    "d": "D",
    "": "",
    "unclassified": "",
}
_LAT_COLUMNS = ("object_lat", "sample_lat")
_LON_COLUMNS = ("object_lon", "sample_long", "sample_lon")
# Cells that must agree for two rows of one object_id to be images of the same object.
_SAME_OBJECT = (
    "object_lat",
    "object_lon",
    "object_date",
    "object_time",
    "object_depth_min",
    "object_depth_max",
    "sample_id",
    "acq_id",
)
_FEATURE_MISSING = ("nan", "NaN", "NAN", "NA", "na", "N/A", "n/a")
#: Text that pandas/ZooProcess write for a missing cell (the Tara Med import's
#: ``sample_stationid``, the APERO imports' ``acq_quality``): read as empty everywhere.
_NAN_TEXT = ("nan", "NaN", "NAN")
#: Missing in metadata numbers (volume, depth, pixel size, coordinates): the numeric codes
#: and the literal ``nan``.
_NUMBER_MISSING = (*MISSING_SENTINELS, *_NAN_TEXT)
# HH:MM, HH:MM:SS, HH:MM:SS.mmm (ZooScan exports write 08:28:00.000)
_COLON_TIME = re.compile(r"^(\d{1,2}):(\d{1,2})(?::(\d{1,2}))?(?:[.,](\d{1,9}))?$")
_NUM = r"\d+(?:[.,]\d+)?"
_DMS = re.compile(
    rf"""^\s*(?P<sign>[+-])?\s*(?P<deg>{_NUM})\s*°\s*
    (?:(?P<min>{_NUM})\s*['\u2032]?\s*(?:(?P<sec>{_NUM})\s*(?:"|\u2033|'')?\s*)?)?
    (?P<hemi>[NSEWnsew])?\s*$""",
    re.VERBOSE,
)
_DECIMAL = re.compile(rf"^\s*(?P<sign>[+-])?\s*(?P<deg>{_NUM})\s*(?P<hemi>[NSEWnsew])?\s*$")


def parse_degrees(text: str) -> float:
    """Read a latitude or longitude written in decimal degrees or degrees and minutes.

    Accepted: ``43.5``, ``18,0``, ``43°0 0`` (UVPapp/EcoTaxa ``degrees°minutes seconds``),
    ``43°30.5'``, ``43°30'15"N``, ``-24°25'``, ``24°25'W``. ``S`` and ``W`` are negative;
    the sign applies to the whole value.

    Parameters
    ----------
    text : str
        The cell.

    Returns
    -------
    float
        Decimal degrees.

    Raises
    ------
    ValueError
        When the text is not one of the accepted forms, or minutes or seconds are not
        below 60.

    Examples
    --------
    >>> parse_degrees("43°0 0")
    43.0
    >>> parse_degrees("43°30 30")
    43.50833333333333
    >>> parse_degrees("-24°25'"), parse_degrees("18,0"), parse_degrees("10°30.5'S")
    (-24.416666666666668, 18.0, -10.508333333333333)
    """
    match = _DMS.match(text) or _DECIMAL.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a coordinate: expected decimal degrees (43.5) or degrees and "
            "minutes (43°30 0, 43°30.5')"
        )
    parts = match.groupdict()
    degrees = float(parts["deg"].replace(",", "."))
    minutes = float((parts.get("min") or "0").replace(",", "."))
    seconds = float((parts.get("sec") or "0").replace(",", "."))
    if minutes >= 60 or seconds >= 60:
        raise ValueError(f"{text!r}: minutes and seconds must be below 60")
    if (minutes or seconds) and not degrees.is_integer():
        raise ValueError(f"{text!r}: fractional degrees followed by minutes is ambiguous")
    hemi = (parts.get("hemi") or "").upper()
    if parts["sign"] == "-" and hemi in ("S", "W"):
        raise ValueError(f"{text!r}: both a minus sign and a S/W hemisphere")
    value = degrees + minutes / 60 + seconds / 3600
    return -value if parts["sign"] == "-" or hemi in ("S", "W") else value


def _feature_name(raw: str) -> str:
    """Feature name of a TSV column: ``object_`` dropped, ``.`` dropped, ``%`` -> ``pct_``.

    A name left starting with ``_`` is a ``%`` that was replaced by ``_`` (the ecotaxar
    Tara export writes ``object_%area`` as ``object__area``): ``pct_`` too.
    """
    name = raw.strip().lower()
    name = name.removeprefix("object_")
    name = name.replace(".", "").replace("%", "pct_")
    return "pct" + name if name.startswith("_") else name


class _Rows:
    """Case-insensitive access to the text cells of a RawTable."""

    def __init__(self, raw: RawTable) -> None:
        self.raw = raw
        self.n = len(raw.cells)
        names = [c for c in raw.cells.columns if c != "_line"]
        self.columns = {}
        for name in names:
            self.columns.setdefault(name.lower(), name)

    def shifted(self, by: int) -> _Rows:
        """Return the rows numbered ``by`` lines further (a block of a file)."""
        return _Rows(self.raw.shifted(by)) if by else self

    def has(self, name: str) -> bool:
        return name in self.columns

    def shown(self, limit: int = 10) -> str:
        names = list(self.columns.values())
        more = f", … ({len(names)} in all)" if len(names) > limit else ""
        return ", ".join(names[:limit]) + more

    def text(self, name: str) -> pd.Series:
        """Return the stripped cells of a column; ``""`` where absent or a literal ``nan``."""
        if name not in self.columns:
            return pd.Series([""] * self.n, dtype=str)
        text = self.raw.cells[self.columns[name]].str.strip().reset_index(drop=True)
        nan = text.isin(_NAN_TEXT)
        return text.where(~nan, "") if nan.any() else text

    def numbers(
        self, name: str, *, missing: Sequence[str] = _NUMBER_MISSING
    ) -> tuple[np.ndarray, np.ndarray, pd.Series]:
        """Return a present column's numbers, where its text is not one, and its text."""
        text = self.text(name)
        values, bad = to_float(text, missing=missing)
        return values, bad, text

    def number(
        self,
        check: RowChecker,
        name: str,
        what: str,
        *,
        missing: Sequence[str] = _NUMBER_MISSING,
        flag: bool = True,
    ) -> np.ndarray:
        if name not in self.columns:
            return np.full(self.n, np.nan)
        values, bad, text = self.numbers(name, missing=missing)
        if flag:
            check.flag(bad, self.columns[name], _reasons(bad, f"{name} {{!r}} is not {what}", text))
        return values


def _reasons(mask: np.ndarray, template: str, *columns: Any) -> np.ndarray:
    """One formatted reason per row where ``mask`` is true (None elsewhere)."""
    out = np.full(len(mask), None, dtype=object)
    rows = np.flatnonzero(mask)
    if not len(rows):
        return out  # the usual case: no conversion of whole columns to objects
    # Python scalars, as before (a numpy float's repr would show 'np.float64(…)')
    picked = [
        (c.iloc[rows] if isinstance(c, pd.Series) else np.asarray(c)[rows]).tolist()
        for c in columns
    ]
    for k, i in enumerate(rows):
        out[i] = template.format(*(a[k] for a in picked))
    return out


def _times(reader: _Rows, check: RowChecker) -> pd.Series:
    if not reader.has("object_date"):
        check.flag_all(
            "object_date",
            f"missing required column 'object_date' (found: {reader.shown()}); "
            "EcoTaxa objects are dated by object_date (YYYYMMDD) and object_time (HHMMSS).",
        )
        return pd.Series(pd.NaT, index=range(reader.n), dtype="datetime64[ns, UTC]")
    date_text = reader.text("object_date")
    time_text = reader.text("object_time")
    if date_text.str.fullmatch(r"\d{8}").all() and time_text.str.fullmatch(r"\d{6}").all():
        # the usual export (YYYYMMDD, HHMMSS): one parse; any invalid stamp: the full path
        stamp = pd.to_datetime(
            date_text + time_text, format="%Y%m%d%H%M%S", errors="coerce", utc=True
        )
        if not stamp.isna().any():
            return stamp.astype("datetime64[ns, UTC]")
    date = date_text.str.replace(r"[-/]", "", regex=True)
    clock = time_text.where(time_text != "", "0")
    parts = clock.str.extract(r"^(\d{1,6})(?:\.(\d{1,9}))?$")
    # EcoTaxa's ObjectHeader.time_from_txt: HHMM with optional SS, left-padded to 4 digits
    # (spreadsheets drop leading zeros), then right-padded with zero seconds: 420 -> 04:20:00.
    hhmmss = parts[0].fillna("0").str.zfill(4).str.ljust(6, "0")
    colon = clock.str.extract(_COLON_TIME)
    has_colon = colon[0].notna()
    if has_colon.any():  # HH:MM[:SS[.mmm]], each field zero-padded on its own
        hhmmss = hhmmss.where(
            ~has_colon,
            colon[0].str.zfill(2) + colon[1].str.zfill(2) + colon[2].fillna("0").str.zfill(2),
        )
        parts[0] = parts[0].where(~has_colon, hhmmss)
        parts[1] = parts[1].where(~has_colon, colon[3])
    fraction = pd.to_numeric("0." + parts[1].fillna("0"))
    day = pd.to_datetime(
        date.where(date.str.fullmatch(r"\d{8}")), format="%Y%m%d", errors="coerce", utc=True
    )
    stamp = pd.to_datetime(date + hhmmss, format="%Y%m%d%H%M%S", errors="coerce", utc=True)
    empty = (date_text == "").to_numpy()
    bad_date = day.isna().to_numpy() & ~empty
    bad_time = (parts[0].isna() | stamp.isna()).to_numpy() & ~bad_date & ~empty
    column = reader.columns["object_date"]
    check.flag(empty, column, "empty object_date: the object cannot be placed in time")
    check.flag(
        bad_date,
        column,
        _reasons(bad_date, "object_date {!r} is not a date: expected YYYYMMDD", date_text),
    )
    check.flag(
        bad_time,
        reader.columns.get("object_time", "object_time"),
        _reasons(
            bad_time,
            "object_time {!r} is not a time: expected HHMMSS or HH:MM:SS(.mmm)",
            time_text,
        ),
    )
    stamp = stamp + pd.to_timedelta(fraction.to_numpy(), unit="s")
    return stamp.astype("datetime64[ns, UTC]")


def _coordinate(
    reader: _Rows, check: RowChecker, names: Sequence[str], what: str, limit: float
) -> np.ndarray:
    present = [n for n in names if reader.has(n)]
    if not present:
        check.flag_all(
            names[0],
            f"no {what} column: need {' or '.join(names)} (found: {reader.shown()})",
        )
        return np.full(reader.n, np.nan)
    values = np.full(reader.n, np.nan)
    for name in present:
        numbers, bad, text = _degrees(*reader.numbers(name))
        use = np.isnan(values)
        check.flag(
            bad & use,
            reader.columns[name],
            _reasons(
                bad & use,
                f"{name} {{!r}} is not a {what}: expected decimal degrees "
                "(43.5) or degrees and minutes (43°30 0)",
                text,
            ),
        )
        values = np.where(use, numbers, values)
    first = reader.columns[present[0]]
    verb = "is" if len(present) == 1 else "are"
    check.flag(
        np.isnan(values),
        first,
        f"no {what}: {' and '.join(present)} {verb} empty (or a missing-value code)",
    )
    low = -180.0 if limit > 90 else -90.0
    out = (values < low) | (values > limit)
    check.flag(
        out,
        first,
        _reasons(out, f"{what} {{}} is outside [{low:g}, {limit:g}]", values),
    )
    return values


def _degrees(
    numbers: np.ndarray, bad: np.ndarray, text: pd.Series
) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    """Read the cells that are not plain numbers (``bad``) as degrees and minutes."""
    if bad.any():
        cache: dict[str, float] = {}
        for cell in pd.unique(text[bad]):
            try:
                cache[cell] = parse_degrees(cell)
            except ValueError:
                cache[cell] = np.nan
        parsed = text[bad].map(cache).to_numpy(dtype="float64")
        numbers[bad] = parsed
        bad = bad.copy()
        bad[bad] = np.isnan(parsed)
    return numbers, bad, text


def _status(reader: _Rows, check: RowChecker) -> pd.Series:
    text = reader.text("object_annotation_status")
    status = text.str.lower().map(_STATUS)
    unknown = status.isna().to_numpy()
    check.flag(
        unknown,
        reader.columns.get("object_annotation_status", "object_annotation_status"),
        _reasons(
            unknown,
            "object_annotation_status {!r} is not one of predicted, validated, "
            "dubious (or P, V, D, empty)",
            text,
        ),
    )
    return status.fillna("").astype(str)


def _volume(reader: _Rows, check: RowChecker) -> np.ndarray:
    tot = reader.number(check, "sample_tot_vol", "a volume (m³)")
    conc = np.full(reader.n, np.nan)
    if reader.has("sample_volconc"):  # refused only where it is used (no sample_tot_vol)
        conc, bad, text = reader.numbers("sample_volconc")
        use = bad & np.isnan(tot)
        check.flag(
            use,
            reader.columns["sample_volconc"],
            _reasons(use, "sample_volconc {!r} is not a volume (m³)", text),
        )
    from_conc = np.isnan(tot) & ~np.isnan(conc)
    if from_conc.any():
        logger.info(
            "%s: volume from sample_volconc (read as m³, like sample_tot_vol) for %d rows",
            reader.raw.url,
            int(from_conc.sum()),
        )
    volume_m3 = np.where(np.isnan(tot), conc, tot)
    source = np.where(np.isnan(tot), "sample_volconc", "sample_tot_vol")
    nonpositive = volume_m3 <= 0
    for name in ("sample_tot_vol", "sample_volconc"):
        sel = nonpositive & (source == name)
        check.flag(
            sel,
            reader.columns.get(name, name),
            _reasons(sel, f"{name} {{:g}} m³: the sampled volume must be positive", volume_m3),
        )
    sub_part = reader.number(check, "acq_sub_part", "a subsampling denominator")
    bad_part = sub_part <= 0
    check.flag(
        bad_part,
        reader.columns.get("acq_sub_part", "acq_sub_part"),
        _reasons(
            bad_part,
            "acq_sub_part {:g} must be positive (the subsample is 1/acq_sub_part of the sample)",
            sub_part,
        ),
    )
    fraction = (sub_part > 0) & (sub_part < 1)
    if fraction.any():
        logger.warning(
            "%s: acq_sub_part below 1 (e.g. %g) looks like a fraction, not a denominator; "
            "used literally as EcoTaxa does (volume = tot_vol / acq_sub_part)",
            reader.raw.url,
            sub_part[fraction][0],
        )
    denominator = np.where(np.isnan(sub_part), 1.0, np.where(bad_part, np.nan, sub_part))
    return volume_m3 * 1000.0 / denominator


def _subsample_fraction(reader: _Rows, check: RowChecker) -> np.ndarray:
    """``acq_subsample_fraction`` in (0, 1]; 1.0 where absent, empty or a missing code."""
    name = "acq_subsample_fraction"
    fraction = reader.number(check, name, "a fraction in (0, 1]")
    outside = (fraction <= 0) | (fraction > 1)
    check.flag(
        outside,
        reader.columns.get(name, name),
        _reasons(
            outside,
            f"{name} {{:g}} is outside (0, 1]: it is the fraction of the "
            "objects counted that were imaged",
            fraction,
        ),
    )
    if reader.has(name) and (fraction < 1).any():
        logger.info(
            "%s: subsample_fraction from %s (e.g. %g): concentrations divide by it",
            reader.raw.url,
            name,
            fraction[fraction < 1][0],
        )
    return np.where(np.isnan(fraction), 1.0, fraction)


def _pixel_size(reader: _Rows, check: RowChecker) -> np.ndarray:
    pixel = reader.number(check, "process_pixel", "a pixel size (µm)")
    for name, factor in (
        ("process_particle_pixel_size_mm", 1000.0),
        ("process_particle_pixel_size_um", 1.0),
        ("process_particle_pixel_size_µm", 1.0),
    ):
        if reader.has(name):
            alt = reader.number(check, name, "a pixel size") * factor
            pixel = np.where(np.isnan(pixel), alt, pixel)
    if reader.has("acq_pixel"):
        acq = reader.number(check, "acq_pixel", "a pixel size (UVP5 mm, UVP6 µm)")
        in_mm = acq < 1.0
        instrument = reader.text("acq_instrument").str.lower()
        clash = (instrument.str.contains("uvp5").to_numpy() & (acq >= 1.0)) | (
            instrument.str.contains("uvp6").to_numpy() & in_mm
        )
        if clash.any():
            logger.warning(
                "%s: acq_pixel %g disagrees with acq_instrument %r (UVP5 mm/px, UVP6 µm/px); "
                "read by magnitude (< 1 is mm)",
                reader.raw.url,
                acq[clash][0],
                instrument[clash].iloc[0],
            )
        use = np.isnan(pixel) & ~np.isnan(acq)
        if use.any():
            logger.info(
                "%s: pixel size from acq_pixel, %d row(s) read as mm/px (UVP5), %d as µm/px",
                reader.raw.url,
                int((use & in_mm).sum()),
                int((use & ~in_mm).sum()),
            )
        pixel = np.where(np.isnan(pixel), np.where(in_mm, acq * 1000.0, acq), pixel)
    nonpositive = pixel <= 0
    check.flag(
        nonpositive,
        "pixel_size_um",
        _reasons(nonpositive, "pixel size {:g} µm must be positive", pixel),
    )
    return pixel


def _features(reader: _Rows, check: RowChecker, features: Sequence[str]) -> dict[str, np.ndarray]:
    by_name: dict[str, str] = {}
    for key in reader.columns:
        if key.startswith("object_"):
            by_name.setdefault(_feature_name(key), key)
    out: dict[str, np.ndarray] = {}
    absent = []
    nan = np.full(reader.n, np.nan)
    nan.flags.writeable = False  # one array for every absent feature, never written
    for name in features:
        key = by_name.get(name)
        if key is None:
            absent.append(name)
            out[name] = nan
            continue
        out[name] = reader.number(check, key, "a number", missing=_FEATURE_MISSING)
    if absent:
        logger.info(
            "%s: %d of %d feature column(s) absent, set to NaN (e.g. %s)",
            reader.raw.url,
            len(absent),
            len(features),
            ", ".join(absent[:5]),
        )
    return out


def _sizes(
    reader: _Rows, check: RowChecker, pixel_um: np.ndarray, area_px: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """``area_mm2`` and ``esd_um`` from ``object_area`` (px) and the pixel size (µm).

    ``area_px`` is the already converted ``area`` feature, or None when the caller did not
    ask for it (the column is then read here). The ESD is ``2 sqrt(area / pi)`` in
    pixels, scaled by the pixel size, as EcoTaxa computes its biovolumes; ``object_esd``
    is not used: ZooProcess 7 exports (the Tara export) hold ``2 floor(area / pi)`` there,
    without the square root.
    """
    if area_px is None:
        area_px = (
            reader.number(check, "object_area", "a number", missing=_FEATURE_MISSING)
            if reader.has("object_area")
            else np.full(reader.n, np.nan)
        )
    with np.errstate(invalid="ignore"):
        esd_px = 2.0 * np.sqrt(np.where(area_px >= 0, area_px, np.nan) / np.pi)
    if reader.has("object_esd"):
        exported = reader.number(
            check, "object_esd", "a number", missing=_FEATURE_MISSING, flag=False
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            off = np.abs(exported / esd_px - 1.0) > 0.01
        if off.any():
            logger.info(
                "%s: object_esd differs from 2 sqrt(object_area/pi) in %d row(s) (e.g. %g "
                "for area %g: ZooProcess 7 wrote 2 area/pi); esd_um comes from object_area",
                reader.raw.url,
                int(off.sum()),
                exported[off][0],
                area_px[off][0],
            )
    return area_px * (pixel_um / 1000.0) ** 2, esd_px * pixel_um
