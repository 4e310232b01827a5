"""EcoPart (UVP5/UVP6 particle module) exports into the canonical particles table.

Four readers, one per kind of EcoPart legacy export, all returning the particles table
(one row per profile x 5 m depth bin: ``profile_id, lat, lon, time, depth_m, volume_l,
n_<lo>_<hi>um`` counts) through :func:`~pipeline.sources.table.read_many`, lazily, one
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

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

import dask.dataframe as dd

from pipeline.errors import InputFormatError
from pipeline.io import expand_urls
from pipeline.sources.ecopart_export import SizeClasses, read_par_export
from pipeline.sources.ecopart_raw import read_par_raw
from pipeline.sources.ecopart_summary import _basename
from pipeline.sources.table import ReadResult

__all__ = [
    "read_ecopart",
]

logger = logging.getLogger(__name__)


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
