"""EcoTaxa TSVs (imports and exports) into the canonical objects table.

:func:`read_ecotaxa` reads EcoTaxa import files (with the ``[t]``/``[f]`` type row) and
export files (every field quoted, possibly with decimal commas) from any fsspec URL,
lazily, one dask task per file, into one row per object: ``object_id, sample_id, acq_id,
lat, lon, time, depth_min_m, depth_max_m, category, hierarchy, status, volume_l,
area_mm2, esd_um, pixel_size_um, subsample_fraction``, the morphological features
(:data:`DEFAULT_FEATURES` or the caller's list) and ``image`` (URL of the object's first
image). Rows that fail a check go to the quarantine with the file, line, column and
reason; per file, ``rows_read == rows_accepted + rows_quarantined``.

Developer note
--------------
*Choices made and why* (automatic choices are logged at INFO):

- **Encoding**: ``encoding=None`` decodes UTF-8 when the whole file is valid UTF-8 (EcoTaxa
  exports) and latin-1 otherwise (UVPapp imports write ``°`` as byte 0xB0). A UTF-8 byte
  order mark is dropped. An explicit encoding is strict: undecodable lines are quarantined.
- **Coordinates**: ``object_lat``/``object_lon`` in decimal degrees (decimal comma
  accepted); where empty, ``sample_lat``/``sample_long`` (or ``sample_lon``). Text with a
  degree sign is read by :func:`parse_degrees`. UVPapp writes ``DD°MM SS`` = degrees,
  minutes, seconds: EcoTaxa's own importer (ecotaxa_back
  ``convert_degree_minute_float_to_decimal_degree``) computes ``DD + (MM + SS/60)/60``,
  so the real UVP6 file's ``43°0 0`` / ``17°0 0`` are 43.0 N / 17.0 E. Unlike EcoTaxa, a
  negative value keeps its sign for minutes and seconds (``-43°30 0`` is -43.5, not
  -42.5). Longitudes in [180, 360] are wrapped to [-180, 180); others are kept as
  written, so a cruise across the dateline (the Tara Polar Circle export: -168.3 to
  +174.9) keeps both signs. A literal ``nan`` (or ``NaN``) is an empty cell in every
  column (ZooProcess/pandas write it: the Tara Med import's ``sample_stationid``, the
  APERO imports' ``acq_quality``), and a missing number in metadata columns, like the
  codes 9999/99999/999999.
- **Time**: ``object_date`` (``YYYYMMDD``; ``-`` or ``/`` separators tolerated) plus
  ``object_time`` in UTC, read as EcoTaxa's importer does (ecotaxa_back
  ``ObjectHeader.time_from_txt``): ``HHMM`` with optional ``SS``, left-padded to 4 digits
  (spreadsheets drop leading zeros), then right-padded with zero seconds. So ``420`` is
  **04:20:00**, not 00:04:20: the QA import ``import_test`` has ``420`` and EcoTaxa's
  export of the same objects (``ref_exports/tsv_with_ids``) has ``042000``. ``HH:MM:SS``
  and fractional seconds (VPR's ``020139.315``) are accepted, and so are ``HH:MM`` and
  ``HH:MM:SS.mmm`` (ZooScan imports from ZooProcess 8: ``08:28:00.000``), each field
  zero-padded on its own. An empty or absent ``object_time`` is midnight; an empty
  ``object_date`` is refused.
- **Status**: ``predicted``/``validated``/``dubious`` (or ``P``/``V``/``D``, any case) ->
  ``P``/``V``/``D``; empty (or ``unclassified``) -> ``''``; anything else is refused.
- **Volume** (``volume_l``, litres of water the imaged (sub)sample stands for), as in
  EcoTaxa's concentration formula (``total_water_volume / subsample_coef`` with
  ``subsample_coef = 1/acq_sub_part``): ``sample_tot_vol`` (m³ filtered) x 1000 /
  ``acq_sub_part`` (1 when empty or absent). Where ``sample_tot_vol`` is empty or a
  missing code (999999), ``sample_volconc`` is used the same way, **read as m³**: in the
  EcoTaxa QA data the same ZooScan samples carry their volume either in
  ``sample_volconc`` (``import_test``, 13.125 and 9.75) or in ``sample_tot_vol``
  (``import_test_tot_vol``, same column position), and exports list both side by side.
  NaN when neither is given (UVP: the volume comes from EcoPart). A volume or
  ``acq_sub_part`` that is zero, negative or not a number is refused. An
  ``acq_sub_part`` below 1 looks like a fraction instead of a denominator; it is used as
  EcoTaxa does (literally) and logged as a warning.
- **Pixel size** (``pixel_size_um``): ``process_pixel`` (ZooScan, µm/px), else
  ``process_particle_pixel_size_mm`` (x 1000) or ``..._um``/``..._µm``, else
  ``acq_pixel``, whose unit differs by instrument: UVP5 writes mm/px (0.092, 0.147),
  UVP6 µm/px (73). A pixel is never smaller than 1 µm nor as large as 1 mm on these
  instruments, so ``acq_pixel < 1`` is read as mm and converted; when
  ``acq_instrument`` names a UVP5 or UVP6 that disagrees with the magnitude, the
  magnitude wins and a warning is logged.
- **Sizes in physical units** (``area_mm2``, ``esd_um``): ZooProcess features are in
  pixels; ``area_mm2 = area_px x (pixel_size_um / 1000)²`` and ``esd_um = 2 sqrt(area_px /
  pi) x pixel_size_um``, from ``object_area`` (EcoTaxa's own biovolume formula). The
  exported ``object_esd`` is not used: ZooProcess 8 writes ``2 sqrt(area/pi)`` px there
  (APERO: 41.197 for 1333 px) but ZooProcess 7 wrote ``2 floor(area/pi)`` (the Tara
  export: 35070 for 55089 px); a disagreement is logged. NaN without area or pixel size.
- **Subsample fraction** (``subsample_fraction``): the fraction of the objects counted in
  the (sub)sample that are in the file, by which a count is divided on top of the volume:
  ``acq_subsample_fraction`` (the demo world's exports, a uniform random subsample of every
  object >= 1.02 mm of its UVP casts). Real EcoTaxa UVP exports have no such column (every
  object counted was imaged): 1.0 when the column is absent, empty or a missing code
  (999999). A value outside (0, 1] or text is refused. Net samples' splitting
  (``acq_sub_part``) is already in ``volume_l`` and is not repeated here.
- **Features**: every ``object_*`` column, named without the prefix, lower case, ``.``
  dropped and ``%`` -> ``pct_`` (``object_perim.`` -> ``perim``, ``object_%area`` ->
  ``pct_area``; the ecotaxar export's ``object__area``, its ``%`` written ``_``, too).
  Absent features are NaN (LOKI, VPR and IFCB have other feature sets: their rows are
  accepted with NaN where the ZooProcess features are missing). Feature
  cells do **not** use the 999999/99999/9999 missing codes (an area of 9999 px is a real
  value); only empty, ``nan`` and ``NA`` are missing. A feature cell that is text is
  refused.
- **Images**: ``img_file_name`` is resolved relative to the TSV's folder, *inside* the
  archive for chained URLs (``zip://ecotaxa_x.tsv::zip://inner.zip::outer.zip`` gives
  ``zip://sub1/a.png::zip://inner.zip::outer.zip``, which fsspec opens). A path that is
  absolute, has a protocol or climbs out with ``..`` is refused. ``check_images``:
  ``True`` refuses each row whose image is missing (one listing per folder); ``"auto"``
  (default) does the same when the file's export carries images, but when *none* of the
  images a file (or a byte-range block of it) names exists, the TSV was exported or
  copied without its images (the real ZooScan exports under ``shared/data``): its rows
  are accepted with ``image = ""`` and a warning is logged; ``False`` does not look and
  keeps the resolved URLs.
- **One row per object**: rows that repeat an ``object_id`` with the same position, time
  and sample but another ``img_rank`` are the object's other images (real exports do
  this): the lowest-rank row is kept and the others are quarantined as "extra image",
  so counts still reconcile and no line is lost. Any other repeat of an ``object_id`` in
  a file is a duplicate: later occurrences are refused, naming the line of the first.
  Duplicates *across* files are not detected (one task per file).
- **Depth**: ``object_depth_min``/``max`` in metres; where one is missing the other is
  used (in-situ instruments give one depth); ``min > max`` is refused.
- **Typed read**: the columns used are read by pyarrow, numbers straight into float64
  (:mod:`pipeline.sources.ecotaxa_clean`); a number column with a cell that is not a
  plain number is converted from its text, and a file pyarrow cannot split as the
  careful tokenizer does is read cell by cell. The tables are the same either way.
"""

from __future__ import annotations

import codecs
import functools
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import dask
import fsspec
import numpy as np
import pandas as pd
from fsspec.core import url_to_fs
from fsspec.utils import read_block

from pipeline.errors import ConfigError, InputFormatError
from pipeline.io import join_under, parent_url, read_bytes
from pipeline.sources.archive import ArchiveFile, inventory_frame, list_files
from pipeline.sources.ecotaxa_clean import _read_clean
from pipeline.sources.ecotaxa_columns import (
    _LAT_COLUMNS,
    _LON_COLUMNS,
    _SAME_OBJECT,
    _coordinate,
    _feature_name,
    _features,
    _pixel_size,
    _reasons,
    _Rows,
    _sizes,
    _status,
    _subsample_fraction,
    _times,
    _volume,
)
from pipeline.sources.table import (
    BATCH_BYTES,
    Batch,
    FileResult,
    ReadResult,
    RowChecker,
    conform,
    read_many,
    result_of,
    to_float,
    tokenize,
)

__all__ = [
    "DEFAULT_FEATURES",
    "objects_meta",
    "read_ecotaxa",
]

logger = logging.getLogger(__name__)

#: ZooProcess/ImageJ morphological features (ZooScan, UVP5, UVP6), in pixels and grey
#: levels, named without ``object_``, ``.`` dropped and ``%`` -> ``pct_``.
DEFAULT_FEATURES: tuple[str, ...] = (
    "area",
    "mean",
    "stddev",
    "mode",
    "min",
    "max",
    "x",
    "y",
    "xm",
    "ym",
    "perim",
    "bx",
    "by",
    "width",
    "height",
    "major",
    "minor",
    "angle",
    "circ",
    "feret",
    "intden",
    "median",
    "skew",
    "kurt",
    "pct_area",
    "xstart",
    "ystart",
    "area_exc",
    "fractal",
    "skelarea",
    "slope",
    "histcum1",
    "histcum2",
    "histcum3",
    "nb1",
    "nb2",
    "nb3",
    "symetrieh",
    "symetriev",
    "symetriehc",
    "symetrievc",
    "convperim",
    "convarea",
    "fcons",
    "thickr",
    "esd",
    "elongation",
    "range",
    "meanpos",
    "centroids",
    "cv",
    "sr",
    "perimareaexc",
    "feretareaexc",
    "perimferet",
    "perimmajor",
    "circex",
    "cdexc",
    "kurt_mean",
    "skew_mean",
    "convperim_perim",
    "convarea_area",
    "symetrieh_area",
    "symetriev_area",
    "nb1_area",
    "nb2_area",
    "nb3_area",
    "nb1_range",
    "nb2_range",
    "nb3_range",
    "median_mean",
    "median_mean_range",
    "skeleton_area",
)

_LEADING = {
    "object_id": str,
    "sample_id": str,
    "acq_id": str,
    "lat": "float64",
    "lon": "float64",
    "time": "datetime64[ns, UTC]",
    "depth_min_m": "float64",
    "depth_max_m": "float64",
    "category": str,
    "hierarchy": str,
    "status": str,
    "volume_l": "float64",
    "area_mm2": "float64",
    "esd_um": "float64",
    "pixel_size_um": "float64",
    "subsample_fraction": "float64",
}


def objects_meta(features: Sequence[str] | None = None) -> pd.DataFrame:
    """Return the empty objects table: canonical columns and dtypes, in order.

    Parameters
    ----------
    features : sequence of str, optional
        Feature columns (see :func:`read_ecotaxa`); default :data:`DEFAULT_FEATURES`.

    Returns
    -------
    pandas.DataFrame
        No rows; ``object_id … area_mm2, esd_um, pixel_size_um, subsample_fraction``,
        the features (float64), ``image``.

    Examples
    --------
    >>> list(objects_meta(["area", "perim."]).columns)[-5:]
    ['pixel_size_um', 'subsample_fraction', 'area', 'perim', 'image']
    """
    names = _check_features(features)
    columns = {name: pd.Series([], dtype=dtype) for name, dtype in _LEADING.items()}
    columns.update({name: pd.Series([], dtype="float64") for name in names})
    columns["image"] = pd.Series([], dtype=str)
    return pd.DataFrame(columns)


def read_ecotaxa(
    urls: str | Iterable[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    encoding: str | None = None,
    check_images: bool | Literal["auto"] = "auto",
    features: Sequence[str] | None = None,
    batch_bytes: int | None = None,
) -> ReadResult:
    """Read EcoTaxa TSVs (imports or exports) into the canonical objects table, lazily.

    Parameters
    ----------
    urls : str or iterable of str
        TSV files: paths, fsspec URLs, glob patterns, ``file.tsv.gz``, or a member of an
        archive (``zip://ecotaxa_x.tsv::s3://b/x.zip``; nested zips chain:
        ``zip://ecotaxa_x.tsv::zip://inner.zip::/data/outer.zip``); or folders, ``.zip``
        exports and ``s3://`` prefixes as exported, where the ``*.tsv`` (``.tsv.gz``) are
        read, the images counted and anything else listed in ``inventory`` as not read.
    storage_options : mapping, optional
        Passed to fsspec (endpoint, anonymous access); never logged.
    encoding : {None, 'utf-8', 'latin-1'} or str, optional
        ``None`` (default): UTF-8 when the file is valid UTF-8, else latin-1. An explicit
        encoding quarantines the lines it cannot decode.
    check_images : {"auto", True, False}
        ``True``: refuse rows whose ``img_file_name`` does not exist. ``"auto"``
        (default): the same, except that a file none of whose images exists is read as
        an export without images (rows accepted, ``image = ""``, a warning logged).
        ``False``: do not look (the URLs are kept unchecked), e.g. a ``.tsv.gz`` copied
        alone whose images are elsewhere.
    features : sequence of str, optional
        Morphological feature columns, named as in the TSV with or without ``object_``
        (``perim.`` and ``perim`` alike); default :data:`DEFAULT_FEATURES`. Missing ones
        are NaN.
    batch_bytes : int, optional
        Input bytes per task, at most (default
        :data:`~pipeline.sources.table.BATCH_BYTES`); see
        :func:`~pipeline.sources.table.plan_batches`.

    Returns
    -------
    ReadResult
        ``accepted`` (one row per object, columns of :func:`objects_meta`), ``quarantine``
        (``file, line, column, reason, raw``) and ``stats`` (per-file counts that
        reconcile), as dask DataFrames with one partition per file.

    Raises
    ------
    InputFormatError
        When no file is given or a glob pattern matches nothing (a file that cannot be
        read becomes a quarantine row with ``line = 0`` instead).
    ConfigError
        When ``encoding`` is unknown, ``check_images`` is not True, False or ``"auto"``,
        or a feature name clashes with a canonical column.

    See Also
    --------
    pipeline.sources.ecopart.read_ecopart : the particles table from EcoPart exports.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "ecotaxa_demo.tsv")
    >>> _ = open(path, "w", encoding="latin-1").write(
    ...     "object_id\\tobject_lat\\tobject_lon\\tobject_date\\tobject_time\\tobject_area\\n"
    ...     "[t]\\t[f]\\t[f]\\t[t]\\t[t]\\t[f]\\n"
    ...     "a1\\t43°30 0\\t7,25\\t20200205\\t420\\t207\\n"
    ...     "a2\\t95\\t7\\t20200205\\t420\\t12\\n"
    ... )
    >>> objects, quarantine, stats = read_ecotaxa(path, features=["area"]).compute()
    >>> objects[["object_id", "lat", "lon", "area"]].to_dict("records")
    [{'object_id': 'a1', 'lat': 43.5, 'lon': 7.25, 'area': 207.0}]
    >>> str(objects["time"].iloc[0])
    '2020-02-05 04:20:00+00:00'
    >>> quarantine[["line", "column", "reason"]].to_dict("records")
    [{'line': 4, 'column': 'object_lat', 'reason': 'latitude 95.0 is outside [-90, 90]'}]
    """
    names = _check_features(features)
    if check_images not in (True, False, "auto") or not isinstance(check_images, bool | str):
        raise ConfigError(
            f"read_ecotaxa: check_images={check_images!r}; expected True (refuse rows whose "
            "image is missing), False (do not look) or 'auto' (True, except for a file "
            "exported without any of its images)."
        )
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError as err:
            raise ConfigError(
                f"read_ecotaxa: encoding {encoding!r} is unknown; use None (automatic), "
                "'utf-8' or 'latin-1'."
            ) from err
    files, inventory = _sort_files(urls, storage_options)
    if not files:
        raise InputFormatError(
            f"read_ecotaxa: no TSV file among the {len(inventory)} file(s) found "
            f"({', '.join(inventory['file'].head(5))}); EcoTaxa exports are '*.tsv' files."
        )
    logger.info(
        "read_ecotaxa: %d file(s), %d feature column(s), check_images=%s",
        len(files),
        len(names),
        check_images,
    )
    parse = functools.partial(
        _parse_file,
        storage_options=dict(storage_options) if storage_options else None,
        encoding=encoding,
        check_images=check_images,
        features=names,
    )
    limit = BATCH_BYTES if batch_bytes is None else int(batch_bytes)
    big = [f for f in files if _splittable(f, limit)]
    small = [f for f in files if f not in big]
    meta = objects_meta(names)
    batches = read_many(small, parse, meta, batch_bytes=batch_bytes).batches if small else []
    for f in big:
        batches += _block_batches(f, limit, parse, meta, storage_options)
    result = result_of([b.renamed(i) for i, b in enumerate(batches or [])])
    result.inventory = inventory
    return result


_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip")


def _splittable(f: ArchiveFile, limit: int) -> bool:
    """Tell whether ``f`` is read in blocks (a plain file bigger than a batch)."""
    return (
        f.size is not None
        and f.size > limit
        and "::" not in f.url
        and not f.url.lower().endswith(_COMPRESSED)
    )


def _block_batches(
    f: ArchiveFile,
    limit: int,
    parse: Any,
    meta: pd.DataFrame,
    storage_options: Mapping[str, Any] | None,
) -> list[Batch]:
    """Batches of byte-range blocks of one big TSV (whole lines, each line in one block).

    The line number of each block's first line comes from a first pass that counts the
    line ends of every block on the workers (at disk speed, one integer per block back),
    so the quarantine names the file's own line numbers.
    """
    size = int(f.size or 0)
    offsets = list(range(0, size, limit))
    options = dict(storage_options) if storage_options else None
    counts = dask.compute(*[dask.delayed(_count_lines)(f.url, o, limit, options) for o in offsets])
    before = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)
    logger.info("%s: %d bytes read in %d byte-range blocks", f.url, size, len(offsets))
    token = dask.base.tokenize(parse, meta, f.url, f.size)[:16]
    return [
        Batch(
            name=f"{k:05d}-{token[:11]}b{k:04d}",
            urls=(f.url,),
            parse_one=functools.partial(parse, block=(o, limit, int(shift))),
            meta=meta,
            continues=k > 0,
        )
        for k, (o, shift) in enumerate(zip(offsets, before, strict=True))
    ]


def _count_lines(
    url: str, offset: int, length: int, storage_options: Mapping[str, Any] | None
) -> int:
    return _read_block(url, offset, length, storage_options).count(b"\n")


def _read_block(
    url: str, offset: int, length: int, storage_options: Mapping[str, Any] | None
) -> bytes:
    """Whole lines of ``url`` starting in ``[offset, offset + length)``."""
    try:
        with fsspec.open(url, "rb", **dict(storage_options or {})) as fh:
            return read_block(fh, offset, length, delimiter=b"\n")
    except FileNotFoundError as err:
        raise InputFormatError(f"{url}: file not found.") from err


_TABLE_SUFFIXES = (".tsv", ".tsv.gz", ".tsv.bz2", ".tsv.xz", ".tsv.zst", ".txt")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")


def _sort_files(
    urls: str | Iterable[str], storage_options: Mapping[str, Any] | None
) -> tuple[list[ArchiveFile], pd.DataFrame]:
    """Files to read (named ones, and the TSVs found) and the inventory of all found."""
    found = list_files(urls, storage_options=storage_options)
    read, rows = [], []
    for f in found:
        name = f.name.lower()
        if not f.expanded or name.endswith(_TABLE_SUFFIXES):
            read.append(f)
            rows.append((f, "EcoTaxa TSV", "read"))
        elif name.endswith(_IMAGE_SUFFIXES):
            rows.append((f, "image", "not read (images are read by the image commands)"))
        else:
            rows.append((f, "unknown", "unknown: not read"))
    return read, inventory_frame(rows)


def _check_features(features: Sequence[str] | None) -> tuple[str, ...]:
    if features is None:
        return DEFAULT_FEATURES
    if isinstance(features, str):
        raise ConfigError(
            f"read_ecotaxa: features must be a list of names, got the string {features!r}; "
            f"write features=[{features!r}]."
        )
    names = tuple(dict.fromkeys(_feature_name(f) for f in features))
    reserved = set(_LEADING) | {"image"}
    clash = [n for n in names if n in reserved or not n]
    if clash:
        raise ConfigError(
            f"read_ecotaxa: features {clash!r} clash with canonical columns "
            f"({', '.join(reserved)}) or are empty; name morphological features only."
        )
    return names


def _parse_file(
    url: str,
    *,
    storage_options: Mapping[str, Any] | None,
    encoding: str | None,
    check_images: bool | str,
    features: Sequence[str],
    block: tuple[int, int, int] | None = None,
) -> FileResult:
    """Parse one EcoTaxa TSV (or one byte-range block of it) into a FileResult.

    ``block`` is ``(offset, length, lines before the block)``: the block's whole lines,
    after the file's header line, numbered as in the file (module level, so it pickles).
    """
    shift = 0
    if block is None:
        data = read_bytes(url, storage_options=storage_options)
    elif block[0] == 0:
        data = _read_block(url, 0, block[1], storage_options)
    else:
        offset, length, before = block
        head = read_bytes(url, storage_options=storage_options, first_line=True)
        data = head + _read_block(url, offset, length, storage_options)
        shift = before - 1  # the block's first line is line before + 1; here it is line 2
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    # typed columns where pyarrow splits the file as the careful path (ecotaxa_clean),
    # else every cell as text: the same tables
    reader: _Rows | None = _read_clean(
        data, url, encoding=encoding, skip_type_row=shift == 0, features=features
    )
    if reader is None:
        logger.debug("%s: read cell by cell (the careful path)", url)
        reader = _Rows(tokenize(data, url, encoding=encoding, skip_type_row=shift == 0))
    return _objects(reader.shifted(shift), check_images, storage_options, features)


def _objects(
    reader: _Rows,
    check_images: bool | str,
    storage_options: Mapping[str, Any] | None,
    features: Sequence[str],
) -> FileResult:
    """Convert and check the cells of one file (or block) into its objects and quarantine."""
    raw, url = reader.raw, reader.raw.url
    check = RowChecker(raw)

    ids = reader.text("object_id")
    if not reader.has("object_id"):
        check.flag_all(
            "object_id",
            f"missing required column 'object_id' (found: {reader.shown()}); "
            "is this an EcoTaxa TSV? Each object needs its object_id.",
        )
    check.flag(ids == "", "object_id", "empty object_id")
    _flag_repeats(reader, check)

    time = _times(reader, check)
    lat = _coordinate(reader, check, _LAT_COLUMNS, "latitude", 90.0)
    lon = _coordinate(reader, check, _LON_COLUMNS, "longitude", 360.0)
    lon = np.where(lon >= 180.0, lon - 360.0, lon)
    depth_min = reader.number(check, "object_depth_min", "depth (m)")
    depth_max = reader.number(check, "object_depth_max", "depth (m)")
    depth_min, depth_max = (
        np.where(np.isnan(depth_min), depth_max, depth_min),
        np.where(np.isnan(depth_max), depth_min, depth_max),
    )
    check.flag(
        depth_min > depth_max,
        "object_depth_min",
        _reasons(
            depth_min > depth_max,
            "object_depth_min {} exceeds object_depth_max {}",
            depth_min,
            depth_max,
        ),
    )
    status = _status(reader, check)
    volume = _volume(reader, check)
    pixel = _pixel_size(reader, check)
    fraction = _subsample_fraction(reader, check)
    feats = _features(reader, check, features)
    area_mm2, esd_um = _sizes(reader, check, pixel, feats.get("area"))
    image = _images(reader, check, check_images=check_images, storage_options=storage_options)

    table = pd.DataFrame(
        {
            "object_id": ids,
            "sample_id": reader.text("sample_id"),
            "acq_id": reader.text("acq_id"),
            "lat": lat,
            "lon": lon,
            "time": time,
            "depth_min_m": depth_min,
            "depth_max_m": depth_max,
            "category": reader.text("object_annotation_category"),
            "hierarchy": reader.text("object_annotation_hierarchy"),
            "status": status,
            "volume_l": volume,
            "area_mm2": area_mm2,
            "esd_um": esd_um,
            "pixel_size_um": pixel,
            "subsample_fraction": fraction,
            **feats,
            "image": image,
        },
        copy=False,  # one block per column: no copy of the columns into one 2-D block
    )
    result = check.result(table)
    result.accepted = conform(result.accepted, objects_meta(features))
    logger.info(
        "%s: %d rows read (%s), %d objects accepted, %d quarantined",
        url,
        raw.rows_read,
        raw.encoding,
        len(result.accepted),
        raw.rows_read - len(result.accepted),
    )
    return result


def _flag_repeats(reader: _Rows, check: RowChecker) -> None:
    """Quarantine extra-image rows and duplicate object ids (naming the first line)."""
    ids = reader.text("object_id")
    if ids.is_unique:
        return  # the usual case, found at a third of the cost of 'duplicated'
    repeated = ids.duplicated(keep=False).to_numpy() & (ids != "").to_numpy()
    if not repeated.any():
        return
    lines = reader.raw.cells["_line"].to_numpy()
    ranks, _ = to_float(reader.text("img_rank"))
    signature = pd.Series(
        list(zip(*(reader.text(c) for c in _SAME_OBJECT), strict=True)), dtype=object
    )
    mask = np.zeros(reader.n, dtype=bool)
    reasons = np.full(reader.n, None, dtype=object)
    columns = np.full(reader.n, "object_id", dtype=object)
    rows = np.flatnonzero(repeated)
    for oid, group in pd.Series(rows).groupby(ids.to_numpy()[rows]):
        order = sorted(group, key=lambda i: (np.nan_to_num(ranks[i], nan=np.inf), lines[i]))
        kept = order[0]
        seen_ranks = {ranks[kept]}
        for i in order[1:]:
            mask[i] = True
            same = signature.iloc[i] == signature.iloc[kept]
            if same and not np.isnan(ranks[i]) and ranks[i] not in seen_ranks:
                seen_ranks.add(ranks[i])
                columns[i] = "img_rank"
                reasons[i] = (
                    f"extra image (img_rank {ranks[i]:g}) of object {oid!r} kept from line "
                    f"{lines[kept]}: the objects table holds one row per object, with its "
                    "lowest-rank image (not an error)"
                )
            else:
                reasons[i] = f"duplicate object_id {oid!r}: first at line {lines[kept]}"
    for column in ("img_rank", "object_id"):
        sel = mask & (columns == column)
        check.flag(sel, reader.columns.get(column, column), reasons)


def _image_url(tsv_url: str, relative: str) -> str | None:
    """Join an img_file_name to the TSV's folder, inside archives too; None if it escapes."""
    return join_under(parent_url(tsv_url), relative)


def _images(
    reader: _Rows,
    check: RowChecker,
    *,
    check_images: bool | str,
    storage_options: Mapping[str, Any] | None,
) -> pd.Series:
    names = reader.text("img_file_name")
    parent = parent_url(reader.raw.url)
    # only the rows that name an image (an export without images names none)
    given = np.flatnonzero((names != "").to_numpy())
    resolved = np.full(len(names), "", dtype=object)
    escapes = np.zeros(len(names), dtype=bool)
    for i, name in zip(given, names.iloc[given].tolist(), strict=True):
        path = join_under(parent, name)
        escapes[i] = path is None
        resolved[i] = path or ""
    column = reader.columns.get("img_file_name", "img_file_name")
    check.flag(
        escapes,
        column,
        _reasons(
            escapes,
            "img_file_name {!r} escapes the TSV's folder (absolute path, "
            "protocol or '..'): refused, images must lie under the TSV's folder",
            names,
        ),
    )
    images = pd.Series(resolved, dtype=str)
    if check_images:
        wanted = images.where(~check.refused & (images != ""), "")
        unique = sorted(set(wanted) - {""})
        missing = _missing(unique, storage_options) if unique else set()
        lost = wanted.isin(missing).to_numpy()
        if unique and len(missing) == len(unique):
            if check_images == "auto":
                logger.warning(
                    "%s: none of the %d image(s) named in img_file_name exists (e.g. %s): "
                    "read as an export without images, image set to '' "
                    "(check_images='auto'; True refuses these rows)",
                    reader.raw.url,
                    len(unique),
                    unique[0],
                )
                return images.where(~lost, "")
            logger.warning(
                "%s: none of the %d image(s) named in img_file_name exists: every row "
                "refused (check_images=True); pass check_images='auto' or False to read an "
                "export without its images",
                reader.raw.url,
                len(unique),
            )
        check.flag(lost, column, _reasons(lost, "referenced image not found: {}", images))
    return images


def _missing(urls: Sequence[str], storage_options: Mapping[str, Any] | None) -> set[str]:
    """URLs of ``urls`` that are not files, listing each folder once."""
    groups: dict[tuple[int, str], list[tuple[str, str]]] = {}
    systems: dict[int, Any] = {}
    missing: set[str] = set()
    for url in urls:
        try:
            fs, path = url_to_fs(url, **dict(storage_options or {}))
        except Exception:  # a protocol or archive that cannot be opened: image missing
            missing.add(url)
            continue
        systems[id(fs)] = fs
        folder = path.rsplit("/", 1)[0] if "/" in path else ""
        groups.setdefault((id(fs), folder), []).append((url, path))
    for (key, folder), items in groups.items():
        fs = systems[key]
        try:
            listing = {p.rstrip("/") for p in fs.ls(folder, detail=False)}
        except Exception:  # folder absent or not listable: fall back to one check per file
            listing = set()
        for url, path in items:
            if path.rstrip("/") in listing:
                continue
            try:
                if not fs.isfile(path):
                    missing.add(url)
            except Exception:
                missing.add(url)
    return missing
