"""EcoPart (UVP5/UVP6 particle module) exports into the canonical particles table.

Four readers, one per kind of EcoPart legacy export, all returning the particles table
(one row per profile x 5 m depth bin: ``profile_id, lat, lon, time, depth_m, volume_l,
cruise, n_<lo>_<hi>um`` counts) through :func:`~pipeline.sources.table.read_many`, lazily, one
dask task per file:

- :func:`read_par_export`: detailed (45 classes) or reduced (15 classes) PAR exports, one
  file per profile or ``*_PAR_Aggregated.tsv``; concentrations x volume -> counts.
- :func:`read_par_raw`: raw PAR exports (``*_PAR_raw_*.tsv``, 1 m rows of particle areas
  in pixels), binned here into 5 m bins and ESD classes exactly as EcoPart does.
- :func:`read_ecopart`: reads an export as exported (a folder, glob, zip of zips or
  ``s3://`` prefix), dispatching PAR files by name, each with the metadata summary of its
  export; ZOO, CTD, ODV and unknown files are listed in ``inventory`` (never fatal).
- :func:`read_metadata_summary`: the ``*_Export_metadata_summary.tsv`` (either style), read
  eagerly (it is small) for positions, times and calibration.

Developer note
--------------
*Choices made and why* (each automatic choice is logged at INFO):

- Files are read in batches of about 128 MiB of input (at least 50 files each while the
  bytes allow; :func:`~pipeline.sources.table.plan_batches`), one task per batch, so
  40,000 profiles are a few hundred tasks. A clean detailed export (every row plain
  numbers that pass the checks) is read by pandas' C parser; any other file takes the
  line-by-line path that quarantines what is wrong: same table, ten times faster.
- ZOO and CTD files are listed, not read: the particles table is the PAR files' (the UVP
  CTD as an in-situ predictor source is not built here).

- Position and time come from the metadata summary, one per profile (the cast's start,
  ``yyyy-mm-dd hh:mm`` or ``sampledate``), for every bin: the raw and the detailed
  exports then give identical tables. The per-bin times of UVP6 exports are not kept.
- ``cruise`` comes from the metadata summary too (``Cruise`` of a detailed/reduced
  summary, ``cruise`` of a raw one: ``sn209_bats_361`` for the real BATS export); where
  the summary leaves it empty, as the EcoPart QA exports do, the profile's EcoPart
  project (``Project`` / ``ptitle``) stands for it: a project is one campaign, so
  grouping by it keeps a campaign's casts together (the cruise-grouped random CV,
  :func:`pipeline.run.evaluation.cv_variants`). Logged at INFO with the count.
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

import logging
import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

import dask.dataframe as dd

from pipeline.errors import InputFormatError
from pipeline.sources.archive import ArchiveFile, inventory_frame, list_files
from pipeline.sources.ecopart_export import SizeClasses, read_par_export
from pipeline.sources.ecopart_raw import read_par_raw
from pipeline.sources.ecopart_summary import (
    PAR_EXPORT,
    PAR_RAW,
    SUMMARY,
    _action,
    _file_kind,
    _pick_summary,
)
from pipeline.sources.table import ReadResult, result_of

__all__ = [
    "read_ecopart",
]

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------- dispatch

_SUPPORTED = (
    "detailed/reduced PAR exports ('*_PAR_<profile>.tsv', '*_PAR_Aggregated.tsv') and raw "
    "PAR exports ('*_PAR_raw_*.tsv'), optionally .gz, in folders, zips or s3:// prefixes"
)

_WHAT = {
    SUMMARY: "a metadata summary (read beside the PAR files, or pass it as metadata_url=)",
    "ZOO export": "a ZOO (plankton) export",
    "CTD export": "a CTD export",
    "ODV export": "an ODV export",
    "unknown": "not an EcoPart PAR export by its name",
}


def read_ecopart(
    urls: str | Iterable[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> ReadResult:
    """Read an EcoPart export as exported, choosing the reader of each file by its name.

    The inputs may be files, folders, globs, ``.zip`` archives (zips of zips) or ``s3://``
    prefixes (:func:`pipeline.sources.archive.list_files`). ``*_PAR_raw_*.tsv`` go to
    :func:`read_par_raw`, other ``*_PAR_*.tsv`` (per profile or aggregated, detailed or
    reduced) to :func:`read_par_export`; both kinds together are concatenated (they give
    the same table). Each kind takes the metadata summary found among the inputs that
    goes with it (same folder, same export stamp). ZOO, CTD and ODV files and anything
    unknown are not read: they are listed in ``inventory`` (``action`` "not read by this
    reader" or "unknown: not read"), never fatal.

    Parameters
    ----------
    urls : str or iterable of str
        Files, folders, fsspec URLs, glob patterns, zips or object-store prefixes.
    storage_options : mapping, optional
        Passed to fsspec.
    **kwargs
        Options of the readers (``metadata_url``, ``encoding``, ``size_classes``,
        ``bin_m``, ``batch_bytes``); each reader gets those it knows. Leave
        ``metadata_url`` unset when mixing raw and detailed files: each kind then finds
        its own summary.

    Returns
    -------
    ReadResult
        As :func:`read_par_export`, with ``inventory`` listing every file found.

    Raises
    ------
    InputFormatError
        When no PAR file is among the inputs (naming the files found, their kinds and the
        supported kinds), no file is given, or an option is unknown.
    """
    known = {"metadata_url", "encoding", "size_classes", "bin_m", "batch_bytes"}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise InputFormatError(
            f"read_ecopart: unknown option(s) {unknown}; valid: {sorted(known)}."
        )
    if isinstance(urls, str):
        urls = [urls]
    files = list_files(list(urls), storage_options=storage_options)
    if not files:
        raise InputFormatError("read_ecopart: no input file given (the URL list is empty).")
    kinds = [_file_kind(f.url) for f in files]
    raw_files = [f for f, k in zip(files, kinds, strict=True) if k == PAR_RAW]
    export_files = [f for f, k in zip(files, kinds, strict=True) if k == PAR_EXPORT]
    summaries = [f for f, k in zip(files, kinds, strict=True) if k == SUMMARY]
    if not raw_files and not export_files:
        shown = "; ".join(
            f"{f.url}: {_WHAT.get(k, k)}" for f, k in list(zip(files, kinds, strict=True))[:5]
        )
        more = f" (and {len(files) - 5} more)" if len(files) > 5 else ""
        raise InputFormatError(
            f"read_ecopart: no PAR file among the {len(files)} file(s) found: {shown}{more}; "
            f"read_ecopart reads {_SUPPORTED}."
        )
    logger.info(
        "read_ecopart: %d detailed/reduced and %d raw PAR file(s); %d other file(s) not read",
        len(export_files),
        len(raw_files),
        len(files) - len(export_files) - len(raw_files) - len(summaries),
    )
    options = {k: v for k, v in kwargs.items() if v is not None}
    groups = _by_summary(export_files, raw_files, summaries, options.get("metadata_url"))
    results = []
    for (kind, summary), group in groups.items():
        opts = {**options, "metadata_url": summary} if summary else dict(options)
        if kind == "export":
            opts.pop("bin_m", None)
            results.append(
                read_par_export(group + summaries, storage_options=storage_options, **opts)
            )
        else:
            if export_files and opts.get("size_classes") is None:
                opts["size_classes"] = _meta_kind(results[0].accepted)
            results.append(read_par_raw(group + summaries, storage_options=storage_options, **opts))
    inventory = inventory_frame(
        (f, k, _action(k) if k not in (PAR_RAW, PAR_EXPORT) else "read")
        for f, k in zip(files, kinds, strict=True)
    )
    for r in results:
        used = r.inventory.loc[r.inventory["action"] == "metadata summary: used", "file"]
        inventory.loc[inventory["file"].isin(used), "action"] = "metadata summary: used"
    if len(results) == 1:
        results[0].inventory = inventory
        return results[0]
    if len({tuple(r.accepted.columns) for r in results}) > 1:
        groups = sorted(
            {
                f"{posixpath.dirname(str(r.inventory['file'].iloc[0]))} "
                f"({len(r.accepted.columns)} columns)"
                for r in results
                if len(r.inventory)
            }
        )
        raise InputFormatError(
            "read_ecopart: these exports were made with different size classes, so their "
            f"particles cannot share one table: {'; '.join(groups)}. Ingest each export "
            "on its own (oceanfields ingest ecopart FOLDER for each folder), or in Python "
            "pass size_classes= to bin them onto one set."
        )
    batches = [b.renamed(i) for i, b in enumerate(b for r in results for b in r.batches or [])]
    joined = result_of(batches)
    joined.inventory = inventory
    return joined


def _by_summary(
    export_files: list[ArchiveFile],
    raw_files: list[ArchiveFile],
    summaries: list[ArchiveFile],
    metadata_url: str | None,
) -> dict[tuple[str, str | None], list[ArchiveFile]]:
    """Group the PAR files by kind and by the metadata summary found for them.

    An archive may hold several exports (zips of zips, one per cruise): each PAR file goes
    with the summary of its folder and export stamp. ``None``: no summary found among the
    inputs (the reader looks beside the files, or uses ``metadata_url``).
    """
    groups: dict[tuple[str, str | None], list[ArchiveFile]] = {}
    for kind, files in (("export", export_files), ("raw", raw_files)):
        for f in files:
            summary = metadata_url or _pick_summary(f.url, summaries, kind)
            groups.setdefault((kind, summary), []).append(f)
    if len(groups) > 2:
        logger.info("read_ecopart: %d (kind, metadata summary) groups of PAR files", len(groups))
    return groups


def _meta_kind(frame: dd.DataFrame) -> SizeClasses:
    return "reduced" if len(frame.columns) == 6 + 15 else "detailed"
