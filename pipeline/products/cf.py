"""CF-1.12 and ACDD-1.3 metadata of the fields products: bounds, cell methods, coverage.

:func:`cf_fields` gives a fields Dataset (dims ``(time, layer, lat, lon)``) what a CF
reader needs: the time stamped at the start of each month with ``time_bnds`` (as the
Copernicus Marine monthly products), a numeric ``depth`` coordinate of each layer (its
mid-depth, positive down) with ``depth_bnds`` from the layer's top and bottom,
``lat_bnds``/``lon_bnds``, a ``crs`` grid mapping (EPSG:4326), ``cell_methods``,
``standard_name`` where the CF table has one, ``coverage_content_type``, and the
ACDD-1.3 global attributes (title, summary, keywords, id, licence, creator, publisher,
time, horizontal and vertical coverage, product version, history, references) from the
run's provenance (:func:`product_attributes`). No attribute names a local path of the
machine that ran it (:func:`public_attributes`).

Developer note
--------------
*Standard names* (CF table v93, the one compliance-checker ships, named by
``standard_name_vocabulary`` so checking never downloads a table; none is invented):

- the carbon flux is ``sinking_mass_flux_of_particulate_carbon_in_sea_water``, and so are
  its ``_lower``/``_upper`` prediction bounds: a bound of the predicted flux is a value of
  the same quantity (the long name says which bound, ``interval_coverage`` its
  coverage; CF has no modifier for a prediction bound);
- ``extrapolation`` and ``n_features_outside`` are ``quality_flag``: "an indication of
  assessed quality information of another data variable", linked to every target by
  ``ancillary_variables`` (CF table v93);
- a category that is a biological taxon (:func:`taxon_of`: EcoTaxa writes taxa with a
  capital, ``Copepoda``) is ``number_concentration_of_biological_taxon_in_sea_water``;
  that name needs a ``biological_taxon_name`` auxiliary coordinate, which the NetCDF
  export writes (:func:`pipeline.products.netcdf.netcdf_dataset`), so the name is set
  there and not on the zarr store, whose variables share their scalar coordinates;
- the particle concentrations per size class and the non-living categories
  (``detritus``, ``fiber``, aggregates, fecal pellets) have **no** CF name: table v93
  has number concentrations in sea water of biological taxa and of plastic items only,
  and the particle names are for aerosols in air (checked against the table, and the
  CF proposals for particle number concentrations, cf-convention/discuss #127 and #129,
  are for air). They carry ``long_name`` and ``units``; the ACDD-1.3 check of
  compliance-checker reports each of them (and their bounds) as "standard_name missing"
  (ACDD: highly recommended) and nothing else. :data:`NO_STANDARD_NAME` says why.

*Area means.* ``lat_bnds``/``lon_bnds`` are written always (the cells of the grid);
``cell_methods`` says ``area: mean`` only when ``area_mean=True`` (the fields' grid
averages the environment over each cell).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

__all__ = [
    "CONVENTIONS",
    "NO_STANDARD_NAME",
    "QUALITY_FLAGS",
    "STANDARD_NAME_VOCABULARY",
    "VOLATILE",
    "ProductConfig",
    "bounds_names",
    "category_of",
    "cf_fields",
    "product_attributes",
    "public_attributes",
    "taxon_of",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ProductConfig:
    """Who publishes the fields and under which terms (``product:`` section of a run file).

    Every attribute set here is written as the ACDD-1.3 global attribute of the same name
    on the fields store and its exports, over the defaults of :func:`product_attributes`
    (which already fill title, summary, coverage, provenance and the software version).
    Contacts are never invented: a published product names its own.

    Attributes
    ----------
    title, summary, keywords, license, institution, project, references, naming_authority,
    creator_name, creator_email, creator_url, publisher_name, publisher_email,
    publisher_url, acknowledgement : str, optional
        ACDD-1.3 attributes.
    """

    title: str | None = None
    summary: str | None = None
    keywords: str | None = None
    license: str | None = None
    institution: str | None = None
    project: str | None = None
    references: str | None = None
    naming_authority: str | None = None
    creator_name: str | None = None
    creator_email: str | None = None
    creator_url: str | None = None
    publisher_name: str | None = None
    publisher_email: str | None = None
    publisher_url: str | None = None
    acknowledgement: str | None = None

    def attributes(self) -> dict[str, str]:
        """Return the attributes that are set.

        Examples
        --------
        >>> ProductConfig(license="CC-BY-4.0").attributes()
        {'license': 'CC-BY-4.0'}
        """
        return {k: str(v) for k, v in dataclasses.asdict(self).items() if v not in (None, "")}


#: The ``Conventions`` attribute of every product.
CONVENTIONS = "CF-1.12, ACDD-1.3"
#: The CF standard name table the names come from (the one compliance-checker ships).
STANDARD_NAME_VOCABULARY = "CF Standard Name Table v93"

_STANDARD_NAMES = {"flux_mgc_m2_d": "sinking_mass_flux_of_particulate_carbon_in_sea_water"}
#: The per-cell quality variables of the fields (CF standard name ``quality_flag``).
QUALITY_FLAGS = ("extrapolation", "n_features_outside")
#: Why a target has no CF standard name (the ``comment`` ends with it).
NO_STANDARD_NAME = (
    "No CF standard name exists for this quantity (CF Standard Name Table v93 has number "
    "concentrations in sea water of biological taxa and plastic items only)."
)
_SIZE_CLASS = re.compile(r"conc_\d+(?:p\d+)?_(?:\d+(?:p\d+)?|inf)um_per_(?:l|m3)")
_CATEGORY = re.compile(r"conc_(.+)_per_(?:l|m3)")
_BOUNDED = ("time", "depth", "lat", "lon")
#: Attributes that change on every write of a store (not provenance: never compared).
VOLATILE = (
    "history",
    "Conventions",
    "date_created",
    "date_modified",
    "date_issued",
    "date_metadata_modified",
)

# an absolute local path (POSIX or Windows, or a file:// URL): its folders are dropped
_LOCAL_PATH = re.compile(
    r"(?:file://)?(?:(?<![\w.:/~-])/|\b[A-Za-z]:[\\/])(?:[^\s/\\:,;'\"]+[\\/])+(?=[^\s/\\]*)"
)


def bounds_names() -> dict[str, str]:
    """Return the bounds variable of each bounded coordinate.

    Examples
    --------
    >>> bounds_names()["time"]
    'time_bnds'
    """
    return {c: f"{c}_bnds" for c in _BOUNDED}


def category_of(target: str) -> str | None:
    """Return the EcoTaxa category of a concentration target (``conc_<category>_per_l``).

    Parameters
    ----------
    target : str
        A target name.

    Returns
    -------
    str or None
        The category; None for a particle size class (``conc_102_203um_per_l``) or a
        target that is not a concentration.

    Examples
    --------
    >>> category_of("conc_Copepoda_per_l"), category_of("conc_102_203um_per_l")
    ('Copepoda', None)
    """
    if _SIZE_CLASS.fullmatch(target):
        return None
    m = _CATEGORY.fullmatch(target)
    return m.group(1) if m else None


def taxon_of(target: str) -> str | None:
    """Return the biological taxon whose concentration a target is, if it is one.

    EcoTaxa names taxa with a capital (``Copepoda``, ``Rhizaria``) and morphological or
    non-living categories in lower case (``detritus``, ``fiber``, ``dark_aggregate``).

    Parameters
    ----------
    target : str
        A target name (``conc_<category>_per_l``).

    Returns
    -------
    str or None
        The taxon name (as EcoTaxa spells it, which is how WoRMS registers it for the
        taxa EcoTaxa uses), or None.

    Examples
    --------
    >>> taxon_of("conc_Copepoda_per_l"), taxon_of("conc_fiber_per_l"), taxon_of("flux_mgc_m2_d")
    ('Copepoda', None, None)
    """
    category = category_of(target)
    return category if category and category[:1].isupper() else None


def public_attributes(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Return attributes with every absolute local path reduced to its last part.

    A product travels: the folders of the machine that made it mean nothing elsewhere
    and may say too much. URLs (``s3://…``, ``https://…``) are kept.

    Parameters
    ----------
    attrs : mapping
        Attributes; strings (also inside lists) are cleaned, other values kept.

    Returns
    -------
    dict

    Examples
    --------
    >>> public_attributes({"environment": "/home/me/world/environment.zarr",
    ...                    "catalog": "/srv/cat.yaml:entry", "store": "s3://b/run/x.zarr"})
    {'environment': 'environment.zarr', 'catalog': 'cat.yaml:entry', 'store': 's3://b/run/x.zarr'}
    """

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return _LOCAL_PATH.sub("", value)
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return {str(k): clean(v) for k, v in attrs.items()}


def _edges(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Cell bounds ``(n, 2)`` halfway between neighbours, clipped to ``[low, high]``."""
    v = np.asarray(values, dtype="f8")
    if v.size == 1:
        step = 1.0
        edges = np.array([v[0] - step / 2, v[0] + step / 2])
    else:
        mid = (v[1:] + v[:-1]) / 2
        edges = np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])
    edges = np.clip(edges, low, high)
    return np.stack([edges[:-1], edges[1:]], axis=1)


def _layer_bounds(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Top and bottom (m) of each layer: its coordinates, else its name (``"0-100m"``)."""
    if "layer_top_m" in ds.coords and "layer_bottom_m" in ds.coords:
        top = np.asarray(ds["layer_top_m"].values, dtype="f8")
        return top, np.asarray(ds["layer_bottom_m"].values, dtype="f8")
    pairs = []
    for name in ds["layer"].values:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*m\s*", str(name))
        if m is None:
            raise ValueError(
                f"fields: layer {str(name)!r} has no layer_top_m/layer_bottom_m coordinate "
                "and its name is not 'TOP-BOTTOMm' (e.g. '0-100m'); the layer bounds are "
                "needed for depth_bnds. Keep the features' layer coordinates."
            )
        pairs.append((float(m.group(1)), float(m.group(2))))
    arr = np.array(pairs, dtype="f8").reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def _month_bounds(time: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Month start of each time and the bounds ``(n, 2)`` of its month."""
    t = pd.DatetimeIndex(time)
    start = t.to_period("M").to_timestamp()
    end = (t.to_period("M") + 1).to_timestamp()
    return start.values, np.stack([start.values, end.values], axis=1)


def cf_fields(ds: xr.Dataset, *, area_mean: bool = False) -> xr.Dataset:
    """Return the fields with CF coordinates, bounds and variable attributes.

    Parameters
    ----------
    ds : xarray.Dataset
        Fields, dims ``(time, layer, lat, lon)``, monthly (any day of the month: the
        time is moved to the month's start), coords ``layer_top_m``, ``layer_bottom_m``.
    area_mean : bool
        The values are means over each grid cell (``cell_methods`` adds ``area: mean``).

    Returns
    -------
    xarray.Dataset
        Same variables and values, plus coords ``time_bnds``, ``depth`` (layer
        mid-depth), ``depth_bnds``, ``lat_bnds``, ``lon_bnds``, ``crs``, and CF
        attributes. Calling it again changes nothing.

    Examples
    --------
    >>> coords = {"time": pd.to_datetime(["2020-01-15", "2020-02-15"]),
    ...           "layer": ["0-100m"], "layer_top_m": ("layer", [0.0]),
    ...           "layer_bottom_m": ("layer", [100.0]), "lat": [-0.5, 0.5], "lon": [10.0]}
    >>> f = xr.Dataset({"flux_mgc_m2_d": (("time", "layer", "lat", "lon"),
    ...                  np.ones((2, 1, 2, 1)), {"units": "mg m-2 d-1"})}, coords=coords)
    >>> out = cf_fields(f)
    >>> str(out["time"].values[0])[:10], out["time_bnds"].shape
    ('2020-01-01', (2, 2))
    >>> out["depth"].values.tolist(), out["depth_bnds"].values.tolist()
    ([50.0], [[0.0, 100.0]])
    >>> out["lat_bnds"].values.tolist()
    [[-1.0, 0.0], [0.0, 1.0]]
    >>> out["flux_mgc_m2_d"].attrs["cell_methods"]
    'time: mean depth: mean'
    """
    out = ds.copy()
    nv = "nv"
    start, tb = _month_bounds(out["time"].values)
    time_attrs = dict(out["time"].attrs)
    out = out.assign_coords(time=("time", start, time_attrs))
    out = out.assign_coords(time_bnds=(("time", nv), tb))
    top, bottom = _layer_bounds(out)
    out = out.assign_coords(
        depth=("layer", (top + bottom) / 2),
        depth_bnds=(("layer", nv), np.stack([top, bottom], axis=1)),
        lat_bnds=(("lat", nv), _edges(out["lat"].values, -90.0, 90.0)),
        lon_bnds=(("lon", nv), _edges(out["lon"].values, -180.0, 360.0)),
        crs=((), np.int32(0)),
    )
    out["time"].attrs.update(
        {
            "standard_name": "time",
            "long_name": "time: start of the month the field averages",
            "axis": "T",
            "bounds": "time_bnds",
            "units_metadata": "leap_seconds: none",
        }
    )
    out["depth"].attrs.update(
        {
            "standard_name": "depth",
            "long_name": "depth of the layer middle (the field is a mean over the layer)",
            "units": "m",
            "positive": "down",
            "axis": "Z",
            "bounds": "depth_bnds",
        }
    )
    out["lat"].attrs.update(
        {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north"}
    )
    out["lat"].attrs.update({"axis": "Y", "bounds": "lat_bnds"})
    out["lon"].attrs.update(
        {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east"}
    )
    out["lon"].attrs.update({"axis": "X", "bounds": "lon_bnds"})
    out["layer"].attrs.update({"long_name": "depth layer (top-bottom, m, positive down)"})
    out["crs"].attrs.update(
        {
            "grid_mapping_name": "latitude_longitude",
            "long_name": "coordinate reference system: WGS 84 (EPSG:4326)",
            "epsg_code": "EPSG:4326",
            "semi_major_axis": 6378137.0,
            "inverse_flattening": 298.257223563,
        }
    )
    methods = "time: mean depth: mean" + (" area: mean" if area_mean else "")
    targets = [str(t) for t in ds.attrs.get("targets", [])]
    for name, var in out.data_vars.items():
        if set(var.dims) != {"time", "layer", "lat", "lon"}:
            continue
        attrs = var.attrs
        base = next((t for t in targets if name in (t, f"{t}_lower", f"{t}_upper")), str(name))
        if name in QUALITY_FLAGS:
            attrs["coverage_content_type"] = "qualityInformation"
            attrs["standard_name"] = "quality_flag"
        elif name == base:
            attrs["coverage_content_type"] = "modelResult"
            bounds = [f"{base}_lower", f"{base}_upper", *QUALITY_FLAGS]
            ancillary = [b for b in bounds if b in out.data_vars]
            if ancillary:
                attrs["ancillary_variables"] = " ".join(ancillary)
        else:
            attrs["coverage_content_type"] = "qualityInformation"
        if base in _STANDARD_NAMES:
            attrs["standard_name"] = _STANDARD_NAMES[base]
        elif name not in QUALITY_FLAGS and taxon_of(base) is None:
            comment = str(attrs.get("comment", ""))
            if NO_STANDARD_NAME not in comment:
                attrs["comment"] = f"{comment} {NO_STANDARD_NAME}".strip()
        if "flag_values" not in attrs and var.dtype.kind == "f":
            attrs["cell_methods"] = methods
        attrs.setdefault("long_name", str(name).replace("_", " "))
        attrs["grid_mapping"] = "crs"
    return out


def _iso(value: Any) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _resolution(values: np.ndarray) -> float | None:
    v = np.asarray(values, dtype="f8")
    return float(np.median(np.abs(np.diff(v)))) if v.size > 1 else None


def product_attributes(
    ds: xr.Dataset, attrs: Mapping[str, Any] | None = None, *, now: _dt.datetime | None = None
) -> dict[str, Any]:
    """Return the ACDD-1.3 and CF global attributes of a fields product.

    Coverage (time, latitude, longitude, depth) comes from the Dataset (after
    :func:`cf_fields`); the provenance (``model_id``, ``config_hash``,
    ``source_catalog``, ``software_version``, …) from ``attrs``, which also override any
    default (``title``, ``license``, ``creator_name``, …). Local paths are reduced to
    their last part (:func:`public_attributes`).

    Parameters
    ----------
    ds : xarray.Dataset
        Fields with CF coordinates and bounds (:func:`cf_fields`).
    attrs : mapping, optional
        Provenance and overrides.
    now : datetime, optional
        Creation time (default: now, UTC).

    Returns
    -------
    dict
        Global attributes, JSON-serialisable.

    Examples
    --------
    >>> coords = {"time": pd.to_datetime(["2020-01-01"]), "layer": ["0-100m"],
    ...           "layer_top_m": ("layer", [0.0]), "layer_bottom_m": ("layer", [100.0]),
    ...           "lat": [0.0], "lon": [0.0]}
    >>> f = cf_fields(xr.Dataset(coords=coords))
    >>> a = product_attributes(f, {"config_hash": "ab12", "environment": "/x/env.zarr"})
    >>> a["id"], a["time_coverage_start"], a["time_coverage_duration"], a["environment"]
    ('oceanfields-ab12', '2020-01-01T00:00:00Z', 'P1M', 'env.zarr')
    >>> a["geospatial_vertical_min"], a["geospatial_vertical_max"], a["Conventions"]
    (50.0, 50.0, 'CF-1.12, ACDD-1.3')
    """
    given = dict(attrs or {})
    now = now or _dt.datetime.now(_dt.UTC)
    created = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    # ACDD extents are those of the coordinate values (as ERDDAP writes them, and as
    # compliance-checker compares them); the cells' extents are in the *_bnds variables.
    times, tb = ds["time"].values, ds["time_bnds"].values
    lat0, lat1 = float(ds["lat"].min()), float(ds["lat"].max())
    lon0, lon1 = float(ds["lon"].min()), float(ds["lon"].max())
    depth = np.asarray(ds["depth"].values, dtype="f8")
    targets = [str(t) for t in ds.attrs.get("targets", given.get("targets", []))]
    layers = [str(v) for v in ds["layer"].values]
    key = str(given.get("config_hash") or given.get("model_id") or "fields")
    version = str(given.get("software_version", "oceanfields"))
    out: dict[str, Any] = {
        "title": "oceanfields: particle and plankton concentrations and carbon flux per "
        "depth layer",
        "summary": (
            "Global monthly fields predicted by a gradient-boosted multi-output model "
            "(xgboost) from in-situ plankton and particle imaging (UVP profiles via EcoPart, "
            "EcoTaxa objects) regressed on layer-mean environmental fields, with a "
            "prediction interval from held-out residual quantiles and a flag where the "
            "model extrapolates beyond its training envelope. Targets: "
            + ", ".join(targets)
            + ". Layers: "
            + ", ".join(layers)
            + "."
        ),
        "keywords": ", ".join(
            [
                "Oceans > Ocean Chemistry > Carbon",
                "Biosphere > Aquatic Ecosystems > Plankton",
                "Oceans > Marine Sediments > Particle Flux",
                "particle size distribution",
                "Underwater Vision Profiler",
                "EcoTaxa",
                "EcoPart",
                "digital twin of the ocean",
            ]
        ),
        "keywords_vocabulary": "GCMD Science Keywords (partly), free text",
        "id": f"oceanfields-{key}",
        "naming_authority": "org.oceanfields",
        "product_version": version.split()[-1],
        "processing_level": "L4: model output, gap-filled global fields",
        "cdm_data_type": "Grid",
        "source": "model: xgboost multi-output regression; data: UVP/EcoPart particle "
        "profiles, EcoTaxa objects, environment "
        + str(given.get("source_catalog", given.get("environment", "unknown"))),
        "institution": "oceanfields",
        "project": "oceanfields: Digital Twins of the Ocean",
        "creator_name": "oceanfields",
        "creator_type": "group",
        "creator_institution": "oceanfields",
        "publisher_name": "oceanfields",
        "publisher_type": "group",
        "publisher_institution": "oceanfields",
        "contributor_name": "oceanfields",
        "contributor_role": "processor",
        "license": "CC-BY-4.0 (https://creativecommons.org/licenses/by/4.0/)",
        "references": "Guidi et al. (2008), doi:10.1016/j.dsr.2008.05.014 (carbon "
        "flux from particle size); Kiko et al. (2022), doi:10.5194/essd-14-4315-2022 "
        "(UVP5 data); Chen and Guestrin (2016), doi:10.1145/2939672.2939785 (xgboost); "
        "Roberts et al. (2017), doi:10.1111/ecog.02881 (block cross-validation)",
        "acknowledgement": "EcoTaxa and EcoPart (Institut de la Mer de Villefranche); "
        "Copernicus Marine Service environmental products",
        "comment": "Time stamps are the start of each month (time_bnds: the month); "
        "values are layer means (depth: the layer middle, depth_bnds: its top and "
        "bottom); the geospatial and time coverage attributes give the extremes of the "
        "coordinate values, the cells extend to their bounds. Intervals: <target>_lower and "
        "<target>_upper; extrapolation: 1 where a predictor lies outside the training "
        "envelope.",
        "standard_name_vocabulary": STANDARD_NAME_VOCABULARY,
        "platform": "In Situ Ocean-based Platforms (UVP casts from ships and floats)",
        "platform_vocabulary": "GCMD Platform Keywords",
        "instrument": "Underwater Vision Profiler 5/6 (UVP)",
        "date_created": created,
        "date_modified": created,
        "date_issued": created,
        "date_metadata_modified": created,
        "geospatial_lat_min": lat0,
        "geospatial_lat_max": lat1,
        "geospatial_lat_units": "degrees_north",
        "geospatial_lon_min": lon0,
        "geospatial_lon_max": lon1,
        "geospatial_lon_units": "degrees_east",
        "geospatial_vertical_min": float(np.min(depth)),
        "geospatial_vertical_max": float(np.max(depth)),
        "geospatial_vertical_units": "m",
        "geospatial_vertical_positive": "down",
        "geospatial_vertical_resolution": "layers " + ", ".join(layers),
        "geospatial_bounds": f"POLYGON(({lat0} {lon0}, {lat1} {lon0}, {lat1} {lon1}, "
        f"{lat0} {lon1}, {lat0} {lon0}))",
        "geospatial_bounds_crs": "EPSG:4326",
        "geospatial_bounds_vertical_crs": "EPSG:5831",
        "time_coverage_start": _iso(times.min()),
        "time_coverage_end": _iso(times.max()),
        "time_coverage_duration": _duration(tb.min(), tb.max()),
        "time_coverage_resolution": "P1M",
    }
    res = _resolution(ds["lat"].values)
    if res is not None:
        out["geospatial_lat_resolution"] = f"{res:g} degrees"
    res = _resolution(ds["lon"].values)
    if res is not None:
        out["geospatial_lon_resolution"] = f"{res:g} degrees"
    out.update(given)
    out["Conventions"] = CONVENTIONS
    return public_attributes(out)


def _duration(start: Any, end: Any) -> str:
    """ISO 8601 duration between two month starts (``P1Y``, ``P3M``, ``P1Y6M``)."""
    a, b = pd.Timestamp(start), pd.Timestamp(end)
    months = (b.year - a.year) * 12 + b.month - a.month
    years, months = divmod(months, 12)
    text = "P" + (f"{years}Y" if years else "") + (f"{months}M" if months else "")
    return text if text != "P" else f"P{max((b - a).days, 0)}D"
