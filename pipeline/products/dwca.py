"""A Darwin Core Archive of the sample-level targets, in the OBIS-ENV-DATA layout.

:func:`export_dwca` turns a run's ``targets.parquet`` (one row per cast and layer) into
``dwca.zip`` for OBIS / EMODnet Biology:

- **Event core** (``event.txt``): one event per cast (``eventID`` = the profile id,
  ``eventDate`` in ISO 8601 UTC, ``decimalLatitude``/``decimalLongitude`` WGS84) and
  one child event per cast and layer (``parentEventID`` the cast,
  ``minimumDepthInMeters``/``maximumDepthInMeters`` the layer, ``sampleSizeValue`` the
  volume imaged, in litres);
- **Occurrence extension** (``occurrence.txt``): one occurrence per layer event and
  counted taxon, ``occurrenceStatus`` present (concentration > 0) or absent (0: a zero
  is an observation), ``basisOfRecord`` MachineObservation (an imaging instrument);
- **extended MeasurementOrFact** (``extendedmeasurementorfact.txt``): every
  concentration (per size class, per category), the carbon flux and the volume
  imaged, each with its unit and method; the concentration of a taxon is linked to its
  occurrence (``occurrenceID``), the others to the event only.

with ``meta.xml`` (the archive descriptor) and ``eml.xml`` (EML 2.1.1 dataset metadata:
title, abstract, licence, creator, coverage).

Which categories are taxa: EcoTaxa names taxa with a capital (``Copepoda``,
``Rhizaria``) and morphological or non-living categories in lower case (``detritus``,
``fiber``, ``fecal_pellet``); only taxa become occurrences (``scientificName``), unless
``taxa`` maps categories to scientific names explicitly. The archive holds no
``scientificNameID`` (WoRMS LSIDs need a lookup this offline tool does not make): OBIS
matches names on ingestion.

Identifiers follow the EcoTaxa/OBIS mapping: profile id → ``eventID``, ``<profile>_<layer>``
→ the layer ``eventID``, ``<layer event>:<category>`` → ``occurrenceID``, lat/lon →
``decimalLatitude``/``decimalLongitude``, time → ``eventDate``.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape

import pandas as pd

from pipeline.products.cf import category_of, taxon_of
from pipeline.store import as_store, file_in_store

__all__ = ["dwca_tables", "export_dwca"]

logger = logging.getLogger(__name__)

DWC = "http://rs.tdwg.org/dwc/terms/"
OBIS = "http://rs.iobis.org/obis/terms/"
_ROW_TYPES = {
    "event.txt": DWC + "Event",
    "occurrence.txt": DWC + "Occurrence",
    "extendedmeasurementorfact.txt": OBIS + "ExtendedMeasurementOrFact",
}
_OBIS_TERMS = {"measurementTypeID", "measurementValueID", "measurementUnitID"}
_SIZE = re.compile(r"conc_(\d+(?:p\d+)?)_(\d+(?:p\d+)?|inf)um_per_l")
_CATEGORY = re.compile(r"conc_(.+)_per_l")


def _term(name: str) -> str:
    return (OBIS if name in _OBIS_TERMS else DWC) + name


def _measurement(column: str, categories: Mapping[str, str]) -> dict[str, str] | None:
    """Type, unit and method of a targets column (None: not a measurement)."""
    size = _SIZE.fullmatch(column)
    if size:
        lo, hi = (s.replace("p", ".") for s in size.groups())
        span = f"{lo}-{hi} um" if hi != "inf" else f">= {lo} um"
        return {
            "measurementType": f"abundance of particles of equivalent spherical diameter {span}",
            "measurementUnit": "individuals per litre",
            "measurementMethod": "Underwater Vision Profiler imaging; volume-weighted layer "
            "mean: particles counted in the layer's 5 m bins / volume imaged (EcoPart)",
        }
    if column == "flux_mgc_m2_d":
        return {
            "measurementType": "particulate organic carbon flux",
            "measurementUnit": "mg C m-2 d-1",
            "measurementMethod": "from the particle size spectrum after Guidi et al. (2008), "
            "doi:10.1016/j.dsr.2008.05.014",
        }
    cat = _CATEGORY.fullmatch(column)
    if cat and cat.group(1) in categories:
        return {
            "measurementType": f"abundance of {cat.group(1).replace('_', ' ')}",
            "measurementUnit": "individuals per litre",
            "measurementMethod": "Underwater Vision Profiler imaging, EcoTaxa sorting; "
            "objects counted in the layer / volume imaged (subsampling corrected)",
        }
    return None


def _categories(targets: pd.DataFrame) -> list[str]:
    columns = [str(c) for c in targets.columns if _CATEGORY.fullmatch(str(c))]
    return [c for c in map(category_of, columns) if c is not None]


def dwca_tables(
    targets: pd.DataFrame,
    *,
    taxa: Mapping[str, str] | None = None,
    dataset_id: str = "oceanfields",
) -> dict[str, pd.DataFrame]:
    """Return the Event core, Occurrence and eMoF tables of a targets table.

    Parameters
    ----------
    targets : pandas.DataFrame
        One row per (cast, layer): ``id, lat, lon, time, layer, layer_top_m,
        layer_bottom_m, volume_l`` and the target columns (``conc_*_per_l``,
        ``flux_mgc_m2_d``).
    taxa : mapping of str to str, optional
        Category → scientific name of the categories that are taxa (default: every
        category whose name starts with a capital, as itself).
    dataset_id : str
        ``datasetID`` of every event.

    Returns
    -------
    dict of str to pandas.DataFrame
        ``{"event.txt": …, "occurrence.txt": …, "extendedmeasurementorfact.txt": …}``,
        every value a string (empty where not applicable).

    Examples
    --------
    >>> t = pd.DataFrame({"id": ["p1"], "lat": [10.0], "lon": [-30.0],
    ...                   "time": pd.to_datetime(["2020-03-04T05:06:07Z"]), "layer": ["0-100m"],
    ...                   "layer_top_m": [0.0], "layer_bottom_m": [100.0], "volume_l": [250.0],
    ...                   "conc_Copepoda_per_l": [0.02], "conc_fiber_per_l": [0.0]})
    >>> tables = dwca_tables(t)
    >>> tables["event.txt"][["eventID", "parentEventID", "eventDate"]].values.tolist()
    [['p1', '', '2020-03-04T05:06:07Z'], ['p1_0-100m', 'p1', '2020-03-04T05:06:07Z']]
    >>> occ = tables["occurrence.txt"]
    >>> occ[["occurrenceID", "scientificName", "occurrenceStatus"]].values.tolist()
    [['p1_0-100m:Copepoda', 'Copepoda', 'present']]
    >>> len(tables["extendedmeasurementorfact.txt"])  # 2 concentrations + the volume
    3
    """
    categories = _categories(targets)
    if taxa is None:
        taxa = {c: c for c in categories if taxon_of(f"conc_{c}_per_l")}
    all_categories = {c: taxa.get(c, c) for c in categories}
    t = targets.reset_index(drop=True)
    time = pd.to_datetime(t["time"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    layer_id = t["id"].astype(str) + "_" + t["layer"].astype(str)

    def fmt(values: pd.Series) -> pd.Series:
        return values.map(lambda v: "" if pd.isna(v) else f"{float(v):.10g}")

    common = {
        "eventDate": time,
        "decimalLatitude": fmt(t["lat"]),
        "decimalLongitude": fmt(t["lon"]),
        "geodeticDatum": "EPSG:4326",
        "datasetID": dataset_id,
    }
    casts = pd.DataFrame({"eventID": t["id"].astype(str), "parentEventID": "", **common})
    casts = casts.assign(
        eventType="cast",
        minimumDepthInMeters="",
        maximumDepthInMeters="",
        sampleSizeValue="",
        sampleSizeUnit="",
        samplingProtocol="Underwater Vision Profiler (UVP) vertical profile",
    ).drop_duplicates("eventID")
    layers = pd.DataFrame(
        {
            "eventID": layer_id,
            "parentEventID": t["id"].astype(str),
            **common,
            "eventType": "sample",
            "minimumDepthInMeters": fmt(t["layer_top_m"]),
            "maximumDepthInMeters": fmt(t["layer_bottom_m"]),
            "sampleSizeValue": fmt(t["volume_l"]),
            "sampleSizeUnit": "litre",
            "samplingProtocol": "UVP images of the depth layer, volume-weighted",
        }
    )
    events = pd.concat([casts, layers], ignore_index=True)

    occ_rows = []
    for cat in categories:
        if cat not in taxa:
            continue
        column = f"conc_{cat}_per_l"
        ok = t[column].notna()
        occ_rows.append(
            pd.DataFrame(
                {
                    "eventID": layer_id[ok],
                    "occurrenceID": layer_id[ok] + ":" + cat,
                    "scientificName": taxa[cat],
                    "verbatimIdentification": cat,
                    "occurrenceStatus": (t.loc[ok, column] > 0).map(
                        {True: "present", False: "absent"}
                    ),
                    "basisOfRecord": "MachineObservation",
                    "eventDate": time[ok],
                    "decimalLatitude": fmt(t.loc[ok, "lat"]),
                    "decimalLongitude": fmt(t.loc[ok, "lon"]),
                }
            )
        )
    occ_columns = [
        "eventID",
        "occurrenceID",
        "scientificName",
        "verbatimIdentification",
        "occurrenceStatus",
        "basisOfRecord",
        "eventDate",
        "decimalLatitude",
        "decimalLongitude",
    ]
    occurrences = (
        pd.concat(occ_rows, ignore_index=True) if occ_rows else pd.DataFrame(columns=occ_columns)
    )

    emof_rows = []
    measured = [c for c in t.columns if _measurement(str(c), all_categories)]
    for column in [*measured, "volume_l"]:
        if column == "volume_l":
            info = {
                "measurementType": "sampled volume (imaged)",
                "measurementUnit": "litre",
                "measurementMethod": "number of UVP images in the layer x volume per image",
            }
        else:
            info = _measurement(str(column), all_categories) or {}
        ok = t[column].notna()
        cat = _CATEGORY.fullmatch(str(column))
        linked = cat is not None and cat.group(1) in taxa and not _SIZE.fullmatch(str(column))
        emof_rows.append(
            pd.DataFrame(
                {
                    "eventID": layer_id[ok],
                    "occurrenceID": (layer_id[ok] + ":" + cat.group(1)) if linked and cat else "",
                    "measurementID": layer_id[ok] + ":" + str(column),
                    **info,
                    "measurementValue": fmt(t.loc[ok, column]),
                }
            )
        )
    emof = pd.concat(emof_rows, ignore_index=True)
    emof = emof[
        [
            "eventID",
            "occurrenceID",
            "measurementID",
            "measurementType",
            "measurementValue",
            "measurementUnit",
            "measurementMethod",
        ]
    ]
    return {
        "event.txt": events.astype(str),
        "occurrence.txt": occurrences.astype(str),
        "extendedmeasurementorfact.txt": emof.astype(str),
    }


def _meta_xml(tables: Mapping[str, pd.DataFrame]) -> str:
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        '<archive xmlns="http://rs.tdwg.org/dwc/text/" metadata="eml.xml">\n',
    ]
    for name, frame in tables.items():
        core = name == "event.txt"
        tag = "core" if core else "extension"
        parts.append(
            f'  <{tag} encoding="UTF-8" fieldsTerminatedBy="\\t" linesTerminatedBy="\\n" '
            f'fieldsEnclosedBy="" ignoreHeaderLines="1" rowType="{_ROW_TYPES[name]}">\n'
            f"    <files><location>{name}</location></files>\n"
            + ('    <id index="0"/>\n' if core else '    <coreid index="0"/>\n')
        )
        for i, column in enumerate(frame.columns):
            parts.append(f'    <field index="{i}" term="{_term(str(column))}"/>\n')
        parts.append(f"  </{tag}>\n")
    parts.append("</archive>\n")
    return "".join(parts)


def _eml_xml(targets: pd.DataFrame, attrs: Mapping[str, Any]) -> str:
    time = pd.to_datetime(targets["time"], utc=True)
    e = {k: escape(str(v)) for k, v in attrs.items()}
    title = e.get("title", "oceanfields sample-level targets")
    creator = e.get("creator_name", "oceanfields")
    publisher = e.get("publisher_name", creator)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<eml:eml xmlns:eml="eml://ecoinformatics.org/eml-2.1.1"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="eml://ecoinformatics.org/eml-2.1.1 http://rs.gbif.org/schema/eml-gbif-profile/1.1/eml.xsd"
         packageId="{e.get("id", "oceanfields")}" system="oceanfields" scope="system" xml:lang="en">
  <dataset>
    <title xml:lang="en">{title}</title>
    <creator><organizationName>{creator}</organizationName></creator>
    <metadataProvider><organizationName>{publisher}</organizationName></metadataProvider>
    <pubDate>{pd.Timestamp.now(tz="UTC"):%Y-%m-%d}</pubDate>
    <language>en</language>
    <abstract><para>{e.get("summary", "")}</para></abstract>
    <intellectualRights><para>{e.get("license", "")}</para></intellectualRights>
    <coverage>
      <geographicCoverage>
        <geographicDescription>UVP casts</geographicDescription>
        <boundingCoordinates>
          <westBoundingCoordinate>{targets["lon"].min():.6f}</westBoundingCoordinate>
          <eastBoundingCoordinate>{targets["lon"].max():.6f}</eastBoundingCoordinate>
          <northBoundingCoordinate>{targets["lat"].max():.6f}</northBoundingCoordinate>
          <southBoundingCoordinate>{targets["lat"].min():.6f}</southBoundingCoordinate>
        </boundingCoordinates>
      </geographicCoverage>
      <temporalCoverage>
        <rangeOfDates>
          <beginDate><calendarDate>{time.min():%Y-%m-%d}</calendarDate></beginDate>
          <endDate><calendarDate>{time.max():%Y-%m-%d}</calendarDate></endDate>
        </rangeOfDates>
      </temporalCoverage>
    </coverage>
    <methods>
      <methodStep><description><para>Underwater Vision Profiler casts (EcoPart particle
      counts per 5 m bin and size class, EcoTaxa objects) aggregated per depth layer:
      concentration = count / volume imaged. Carbon flux after Guidi et al. (2008).
      </para></description></methodStep>
    </methods>
    <contact><organizationName>{creator}</organizationName></contact>
  </dataset>
</eml:eml>
"""


def export_dwca(
    run_out: str,
    out: str | None = None,
    *,
    taxa: Mapping[str, str] | None = None,
    attrs: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> str:
    """Write the Darwin Core Archive (OBIS-ENV-DATA) of a run's sample-level targets.

    Parameters
    ----------
    run_out : str
        The run's output folder or URL (holding ``targets.parquet``).
    out : str, optional
        Zip file or URL to write (default ``RUN_OUT/dwca.zip``), whole or not at all.
    taxa : mapping of str to str, optional
        Category → scientific name of the categories that are taxa (see
        :func:`dwca_tables`).
    attrs : mapping, optional
        Dataset metadata for ``eml.xml`` (``title``, ``summary``, ``license``,
        ``creator_name``, …); default the fields store's attributes when present.
    storage_options : mapping, optional
        fsspec options of remote URLs (credentials from the environment).

    Returns
    -------
    str
        The archive written.
    """
    store = as_store(run_out, storage_options=storage_options)
    targets = store.read_parquet("targets.parquet")
    meta: dict[str, Any] = {}
    if store.exists("fields.zarr/zarr.json"):
        meta = dict(store.read_json("fields.zarr/zarr.json").get("attributes", {}))
    meta.update(attrs or {})
    tables = dwca_tables(targets, taxa=taxa, dataset_id=str(meta.get("id", "oceanfields")))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("meta.xml", _meta_xml(tables))
        zf.writestr("eml.xml", _eml_xml(targets, meta))
        for name, frame in tables.items():
            zf.writestr(name, frame.to_csv(sep="\t", index=False, lineterminator="\n"))
    target = out or store.path("dwca.zip")
    dest, name = file_in_store(target, storage_options=storage_options)
    dest.write_bytes(name, buf.getvalue())
    logger.info("dwca: %s (%s)", target, ", ".join(f"{n} {len(f)} rows" for n, f in tables.items()))
    return dest.path(name)
