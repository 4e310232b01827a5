"""Feature fields: the environment averaged per depth layer, and derived features.

The gridded sub-step of the predictors step (the matchup of targets to these fields is
:mod:`pipeline.predictors.matchup`).
:func:`layer_features` turns the environment Dataset of
:func:`~pipeline.sources.copernicus.open_environment` into lazy feature fields with dims
``(time, layer, lat, lon)``, one float32 variable per feature:

- each store variable with a depth axis is averaged over the store levels whose depth
  lies in ``[top_m, bottom_m)`` of the layer, weighted by the thickness of each level's
  cell *inside the layer*: cell bounds are the mid-points between levels, the first cell
  starts half a gap above the first level (not above 0 m) and the last ends half a gap
  below the last level. NaN levels (below the sea floor) are left out of the mean; a
  layer with no finite level is NaN;
- variables without depth (``mlotst``) and ``deptho`` (m) are repeated over the layers
  (``deptho`` also over time);
- ``speed`` = sqrt(uo² + vo²) of the layer means (m s-1);
- ``vorticity`` = relative vorticity of the layer-mean current on the sphere (s-1),
  ``dv/dx - du/dy + u tan(lat) / R`` with ``x = R cos(lat) lon``, ``y = R lat`` (radians,
  R = 6371 km), i.e. ``(dv/dlon - d(u cos(lat))/dlat) / (R cos(lat))``, which is
  ``2 U sin(lat) / R`` for a solid-body rotation ``u = U cos(lat)``. Differences are
  centred, periodic in longitude on a global grid, one-sided at the latitude edges and
  beside NaN (land) neighbours, a zero difference where a water cell has no water
  neighbour along a direction (one-cell channels), NaN on land;
- ``depth`` gives ``layer_mid_m``, the layer's mid-depth (m): the depth the concentrations
  of a layer refer to, the same for every cell of the layer;
- ``doy`` gives ``doy_sin`` and ``doy_cos`` = sin/cos(2π (month - 0.5) / 12) of each time
  step's month: month-centred, so a target sampled any day of a month gets the value of
  the grid cells of that month.

:func:`feature_names` lists the features of such a Dataset and :func:`ocean_mask` the
cells where all of them are valid.

Notes for developers
--------------------
* Nothing here rechunks to points. Feature chunks are (1 time, all layers, the store's
  latitude chunk, all longitudes); layer means are one ``map_blocks`` and vorticity one
  ``map_overlap`` (one ghost row/column), so the feature graph grows with chunks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from pipeline.config import check_range, check_strings
from pipeline.errors import ConfigError
from pipeline.geo import EARTH_RADIUS_KM
from pipeline.targets.particles import Layer

__all__ = [
    "PredictorConfig",
    "feature_names",
    "features_from_means",
    "layer_features",
    "layer_means",
    "ocean_mask",
    "optional_features",
]

logger = logging.getLogger(__name__)

#: Earth radius (km) used for vorticity and great-circle distances.

_RADIUS_M = EARTH_RADIUS_KM * 1e3
_DERIVED = ("depth", "doy", "speed", "vorticity")
_NOT_FEATURES = ("mask", "deptho")
_ENV_DIMS = ("time", "depth", "lat", "lon")
_DERIVED_ATTRS = {
    "speed": {"long_name": "Current speed (layer mean)", "units": "m s-1"},
    "vorticity": {"long_name": "Relative vorticity (layer mean current)", "units": "s-1"},
    "layer_mid_m": {"long_name": "Mid-depth of the layer", "units": "m", "positive": "down"},
    "doy_sin": {"long_name": "sin(2 pi (month - 0.5) / 12)", "units": "1"},
    "doy_cos": {"long_name": "cos(2 pi (month - 0.5) / 12)", "units": "1"},
}


@dataclass(frozen=True, kw_only=True)
class PredictorConfig:
    """Options of :func:`layer_features` and :func:`~pipeline.predictors.matchup.match_predictors`.

    Defaults live here only.

    Attributes
    ----------
    variables : tuple of str, optional
        Store variables used as features, in this order; None takes every variable with
        ``lat`` and ``lon`` dims except ``mask`` and ``deptho``, sorted by name.
    derived : tuple of str
        Derived features, from ``"speed"``, ``"vorticity"`` (both need ``uo`` and ``vo``
        in the store, used or not as features), ``"depth"`` (gives ``layer_mid_m``) and
        ``"doy"`` (gives ``doy_sin`` and ``doy_cos``).
    bathymetry : bool
        Add ``deptho`` (sea-floor depth, m) as a feature when the store has it.
    max_distance_km : float
        Search radius (great-circle, km) for the nearest valid cell of a target whose own
        cell is land or shallower than its layer.
    """

    variables: tuple[str, ...] | None = None
    derived: tuple[str, ...] = ("depth", "speed", "vorticity", "doy")
    bathymetry: bool = True
    max_distance_km: float = 150.0

    def __post_init__(self) -> None:
        """Check the options; raise ConfigError naming the key and the valid values."""
        variables = check_strings("predictors.variables", self.variables, allow_none=True)
        object.__setattr__(self, "variables", variables)
        derived = check_strings("predictors.derived", self.derived, valid=_DERIVED)
        object.__setattr__(self, "derived", derived)
        check_range(
            "predictors.max_distance_km",
            self.max_distance_km,
            low=0,
            unit="km",
            fix="e.g. 150.0 (0 keeps only targets whose own cell is valid)",
        )


def layer_features(
    env: xr.Dataset, layers: Sequence[Layer], *, config: PredictorConfig | None = None
) -> xr.Dataset:
    """Build lazy feature fields per depth layer from the environment Dataset.

    Parameters
    ----------
    env : xarray.Dataset
        Environment with dims among ``(time, depth, lat, lon)`` (as returned by
        :func:`~pipeline.sources.copernicus.open_environment`); depth in m, positive
        down; NaN on land and below the sea floor. Numpy- or dask-backed.
    layers : sequence of Layer
        Depth layers ``[top_m, bottom_m)``, e.g. :data:`pipeline.targets.particles.DEFAULT_LAYERS`.
    config : PredictorConfig, optional
        Variables, derived features and bathymetry (defaults of :class:`PredictorConfig`).

    Returns
    -------
    xarray.Dataset
        Dask-backed, dims ``(time, layer, lat, lon)``, one float32 variable per feature,
        coords ``layer`` (names such as ``"0-100m"``, object dtype), ``layer_top_m``,
        ``layer_bottom_m``, ``time``, ``lat``, ``lon``; chunks (1 time, all layers, the
        environment's latitude chunk, all longitudes); ``attrs["features"]`` (names in
        order) and ``attrs["source"]`` (the environment's). Averaging rules: see the
        module docstring.

    Raises
    ------
    ConfigError
        When a requested variable (or ``uo``/``vo`` for speed or vorticity) is not in the
        store (lists the store's variables), a layer is malformed or holds no depth level
        of the store, or the environment has no time, lat or lon dimension.

    See Also
    --------
    pipeline.predictors.matchup.match_predictors : the features at each target row.
    feature_names : the feature names in order.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> t = np.array([10.0, 20.0, np.nan]).reshape(1, 3, 1, 1) * np.ones((1, 3, 2, 2))
    >>> env = xr.Dataset(
    ...     {"thetao": (("time", "depth", "lat", "lon"), t)},
    ...     coords={"time": pd.to_datetime(["2020-01-01"]), "depth": [5.0, 15.0, 25.0],
    ...             "lat": [0.0, 1.0], "lon": [10.0, 11.0]})
    >>> f = layer_features(env, [Layer(0, 30)], config=PredictorConfig(derived=("doy",)))
    >>> f.attrs["features"], f["thetao"].dims
    (['thetao', 'doy_sin', 'doy_cos'], ('time', 'layer', 'lat', 'lon'))
    >>> float(f["thetao"][0, 0, 0, 0])  # (10 * 10 m + 20 * 10 m) / 20 m, NaN level left out
    15.0
    """
    config = PredictorConfig() if config is None else config
    _check_layers(layers)
    for dim in ("time", "lat", "lon"):
        if dim not in env.dims:
            raise ConfigError(
                f"{_where(env)}: the environment has no {dim!r} dimension (dims: "
                f"{', '.join(map(str, env.dims))}); open it with "
                "pipeline.sources.copernicus.open_environment."
            )
    names, store_vars = _select_variables(env, config)
    env = _normalise_chunks(env[store_vars])
    means = layer_means(env, layers)
    return features_from_means(
        means, layers, names=names, config=config, source=env.attrs.get("source")
    )


def layer_means(env: xr.Dataset, layers: Sequence[Layer]) -> xr.Dataset:
    """Average each variable over each depth layer (thickness-weighted, NaN-aware).

    Parameters
    ----------
    env : xarray.Dataset
        Normalised environment (depth positive down, ascending); any leading dims
        (``time``, ``month`` or none) are kept. Variables without ``depth`` are repeated
        over the layers.
    layers : sequence of Layer
        Depth layers ``[top_m, bottom_m)``.

    Returns
    -------
    xarray.Dataset
        float32, dims ``(..., layer, lat, lon)``, lazy when ``env`` is; coords ``layer``
        (names), ``layer_top_m``, ``layer_bottom_m``; the averaging rules of the module
        docstring. Depth must be one chunk (it is rechunked to one when not).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> env = xr.Dataset({"t": (("depth", "lat", "lon"),
    ...                         np.array([10.0, 20.0, 40.0]).reshape(3, 1, 1))},
    ...                  coords={"depth": [5.0, 15.0, 25.0], "lat": [0.0], "lon": [0.0]})
    >>> layer_means(env, [Layer(0, 20), Layer(20, 30)])["t"].values.ravel().tolist()
    [15.0, 40.0]
    """
    _check_layers(layers)
    weights = None
    if "depth" in env.dims:
        weights = _layer_weights(np.asarray(env["depth"].values, dtype="float64"), layers)
    out: dict[str, xr.DataArray] = {}
    for name, var in env.data_vars.items():
        if "depth" in var.dims:
            assert weights is not None
            var = var.chunk({"depth": -1}) if var.chunks is not None else var
            mean = xr.apply_ufunc(
                _layer_mean_last,
                var,
                kwargs={"weights": weights},
                input_core_dims=[["depth"]],
                output_core_dims=[["layer"]],
                dask="parallelized",
                output_dtypes=["float32"],
                dask_gufunc_kwargs={"output_sizes": {"layer": len(layers)}},
            )
        else:
            mean = var.astype("float32").expand_dims(layer=len(layers))
        lead = [d for d in mean.dims if d not in ("layer", "lat", "lon")]
        out[str(name)] = mean.transpose(*lead, "layer", "lat", "lon")
        out[str(name)].attrs = _cf_attrs(var)
    coords = _layer_coords(layers)
    return xr.Dataset(out).assign_coords(coords).assign_attrs(source=env.attrs.get("source"))


def features_from_means(
    means: xr.Dataset,
    layers: Sequence[Layer],
    *,
    names: Sequence[str],
    config: PredictorConfig,
    source: Any = None,
) -> xr.Dataset:
    """Feature fields from layer means on one grid: the named variables and the derived.

    Parameters
    ----------
    means : xarray.Dataset
        Layer means, dims ``(time, layer, lat, lon)`` (as :func:`layer_means`), holding
        ``names`` and ``uo``/``vo`` when speed or vorticity are asked for.
    layers : sequence of Layer
        The layers of ``means``, in order.
    names : sequence of str
        Variables of ``means`` that are features, in order.
    config : PredictorConfig
        The derived features to add.
    source : optional
        Recorded as ``attrs["source"]``.

    Returns
    -------
    xarray.Dataset
        As :func:`layer_features` returns.
    """
    nt, ny, nx = means.sizes["time"], means.sizes["lat"], means.sizes["lon"]
    lat_chunks = _lat_chunks(means)
    chunks = ((1,) * nt, (len(layers),), lat_chunks, (nx,))
    wanted = {"time": 1, "layer": -1, "lat": lat_chunks, "lon": -1}

    def arr(name: str) -> da.Array:
        var = means[name]
        if "time" not in var.dims:
            var = var.expand_dims(time=nt)
        var = var.transpose("time", "layer", "lat", "lon").chunk(wanted)
        return var.data.astype("float32")

    data: dict[str, tuple[da.Array, dict[str, Any]]] = {
        v: (arr(v), _cf_attrs(means[v])) for v in names
    }
    if "speed" in config.derived:
        u, v = arr("uo"), arr("vo")
        data["speed"] = (da.sqrt(u * u + v * v).astype("float32"), _DERIVED_ATTRS["speed"])
    if "vorticity" in config.derived:
        zeta = _vorticity(arr("uo"), arr("vo"), means["lat"].values, means["lon"].values)
        data["vorticity"] = (zeta, _DERIVED_ATTRS["vorticity"])
    if "depth" in config.derived:
        mid = np.array([(layer.top_m + layer.bottom_m) / 2.0 for layer in layers], "float32")
        column = da.from_array(mid, chunks=len(layers))[None, :, None, None]
        data["layer_mid_m"] = (
            da.broadcast_to(column, (nt, len(layers), ny, nx), chunks=chunks),
            _DERIVED_ATTRS["layer_mid_m"],
        )
    if "doy" in config.derived:
        month = pd.DatetimeIndex(means["time"].values).month.to_numpy()
        angle = 2.0 * np.pi * (month - 0.5) / 12.0
        for name, values in (("doy_sin", np.sin(angle)), ("doy_cos", np.cos(angle))):
            column = da.from_array(values.astype("float32"), chunks=1)[:, None, None, None]
            data[name] = (
                da.broadcast_to(column, (nt, len(layers), ny, nx), chunks=chunks),
                _DERIVED_ATTRS[name],
            )
    dims = ("time", "layer", "lat", "lon")
    coords = {
        "time": means["time"].variable,
        **_layer_coords(layers),
        "lat": means["lat"].variable,
        "lon": means["lon"].variable,
    }
    extra = {
        str(k): v.variable
        for k, v in means.coords.items()
        if k not in coords and set(v.dims) <= {"time"}
    }
    features = xr.Dataset(
        {name: (dims, a, attrs) for name, (a, attrs) in data.items()},
        coords={**coords, **extra},
        attrs={"features": list(data), "source": source},
    )
    logger.info(
        "features: %d (%s) on %d layer(s), chunks per dim %s",
        len(data),
        ", ".join(data),
        len(layers),
        {d: len(c) for d, c in zip(dims, chunks, strict=True)},
    )
    return features


def _layer_coords(layers: Sequence[Layer]) -> dict[str, Any]:
    return {
        "layer": ("layer", np.array([layer.name for layer in layers], dtype=object)),
        "layer_top_m": ("layer", np.array([layer.top_m for layer in layers], dtype="float64")),
        "layer_bottom_m": (
            "layer",
            np.array([layer.bottom_m for layer in layers], dtype="float64"),
        ),
    }


def feature_names(features: xr.Dataset) -> list[str]:
    """Return the feature names of a features Dataset, in order.

    Parameters
    ----------
    features : xarray.Dataset
        Result of :func:`layer_features` (or the same re-opened from zarr).

    Returns
    -------
    list of str
        ``attrs["features"]`` when every name there is a variable, else the data
        variables with a ``layer`` dimension in Dataset order.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"b": ("layer", np.zeros(1)), "a": ("layer", np.zeros(1))},
    ...                 attrs={"features": ["a", "b"]})
    >>> feature_names(ds)
    ['a', 'b']
    """
    listed = features.attrs.get("features")
    if listed is not None and not isinstance(listed, str):
        names = [str(n) for n in listed]
        if names and all(n in features.data_vars for n in names):
            return names
    return [str(n) for n, v in features.data_vars.items() if "layer" in v.dims]


def optional_features(features: xr.Dataset) -> list[str]:
    """Features that may be missing (NaN) at a valid cell: surface-only ones.

    A source variable configured ``surface: surface`` is NaN below the surface layer (and
    wherever its own grid has no value): xgboost treats a missing value natively, so it
    neither limits the ocean mask nor drops a matchup row nor blanks a field cell.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"a": ("layer", [1.0]), "b": ("layer", [np.nan], {"surface_only": 1})})
    >>> optional_features(ds)
    ['b']
    """
    return [n for n in feature_names(features) if features[n].attrs.get("surface_only")]


def ocean_mask(features: xr.Dataset) -> xr.DataArray:
    """Cells where every feature (but the optional ones) is finite at the first time step.

    Parameters
    ----------
    features : xarray.Dataset
        Result of :func:`layer_features`.

    Returns
    -------
    xarray.DataArray
        Boolean, dims ``(layer, lat, lon)``, lazy when the features are; named
        ``is_ocean``. False on land, where the layer is below the sea floor, and where a
        derived feature is undefined (e.g. vorticity at a cell without neighbours).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"a": (("time", "layer", "lat", "lon"), [[[[1.0, np.nan]]]])})
    >>> ocean_mask(ds).values.tolist()
    [[[True, False]]]
    """
    names = [n for n in feature_names(features) if n not in optional_features(features)]
    if not names:
        raise ConfigError("features: no feature variable (none with a 'layer' dimension).")
    first = features[names].isel(time=0)
    valid: xr.DataArray | None = None
    for name in names:
        finite = np.isfinite(first[name])
        valid = finite if valid is None else valid & finite
    assert valid is not None
    valid = valid.transpose("layer", "lat", "lon").rename("is_ocean")
    return valid.drop_vars([c for c in ("time",) if c in valid.coords])


def _where(env: xr.Dataset) -> str:
    return str(env.attrs.get("source") or "environment")


def _check_layers(layers: Sequence[Layer]) -> None:
    if not layers:
        raise ConfigError(
            "predictors: no layers given; pass e.g. pipeline.targets.particles.DEFAULT_LAYERS."
        )
    for layer in layers:
        if not (isinstance(layer, Layer) and layer.bottom_m > layer.top_m >= 0):
            raise ConfigError(
                f"predictors: layer {layer!r} must be a Layer with 0 <= top_m < bottom_m."
            )
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names):
        raise ConfigError(f"predictors: layers {names} repeat a name; give each layer once.")


def _select_variables(
    env: xr.Dataset, config: PredictorConfig, *, dims: tuple[str, ...] = _ENV_DIMS
) -> tuple[list[str], list[str]]:
    """Feature variables (store names, in order) and every store variable needed.

    ``dims``: the dims a feature variable may have (the store's, or the layer means').
    """
    available = sorted(str(v) for v in env.data_vars)
    if config.variables is None:
        names = [
            v
            for v in available
            if v not in _NOT_FEATURES
            and {"lat", "lon"} <= set(env[v].dims)
            and set(env[v].dims) <= set(dims)
        ]
    else:
        names = list(dict.fromkeys(config.variables))
    if config.bathymetry and "deptho" in env.data_vars and "deptho" not in names:
        names.append("deptho")
    needed = list(names)
    wanted_uv = [d for d in ("speed", "vorticity") if d in config.derived]
    if wanted_uv:
        needed += [v for v in ("uo", "vo") if v not in needed]
    missing = [v for v in needed if v not in env.data_vars]
    if missing:
        why = "" if set(missing) <= set(names) else f" (needed by {', '.join(wanted_uv)})"
        raise ConfigError(
            f"{_where(env)}: variable(s) {', '.join(map(repr, missing))}{why} not in the "
            f"store; available: {', '.join(available)}. Fix predictors.variables"
            + (" or drop speed/vorticity from predictors.derived." if why else ".")
        )
    for v in needed:
        if not ({"lat", "lon"} <= set(env[v].dims) <= set(dims)):
            raise ConfigError(
                f"{_where(env)}: variable {v!r} has dims {env[v].dims}; a feature needs lat "
                f"and lon and no dims beyond {dims}. Drop it from predictors.variables."
            )
    return names, needed


def _normalise_chunks(env: xr.Dataset) -> xr.Dataset:
    """Dask-backed, chunks (1 time, all depths, the lat chunks of the first var, all lon)."""
    lat_chunks: tuple[int, ...] | int = -1
    for var in env.data_vars.values():
        if var.chunks is not None and "lat" in var.dims:
            lat_chunks = tuple(var.chunksizes["lat"])
            break
    wanted: dict[str, Any] = {"time": 1, "depth": -1, "lat": lat_chunks, "lon": -1}
    return env.chunk({d: c for d, c in wanted.items() if d in env.dims})


def _lat_chunks(env: xr.Dataset) -> tuple[int, ...]:
    for var in env.data_vars.values():
        if "lat" in var.dims and var.chunks is not None:
            return tuple(var.chunksizes["lat"])
    return (env.sizes["lat"],)


def _cf_attrs(var: xr.DataArray) -> dict[str, Any]:
    keys = ("standard_name", "long_name", "units", "surface_only")
    return {k: var.attrs[k] for k in keys if k in var.attrs}


def _layer_weights(depth: np.ndarray, layers: Sequence[Layer]) -> np.ndarray:
    """Weights (layer, level): thickness (m) of each level's cell inside the layer.

    Only levels with ``top_m <= depth < bottom_m`` count; cell bounds are the mid-points
    between levels (first and last cells extended by half a gap).
    """
    order = np.argsort(depth)
    z = depth[order]
    if z.size > 1:
        mid = (z[1:] + z[:-1]) / 2.0
        top = np.concatenate([[max(0.0, z[0] - (z[1] - z[0]) / 2.0)], mid])
        bottom = np.concatenate([mid, [z[-1] + (z[-1] - z[-2]) / 2.0]])
    else:
        top, bottom = z - 0.5, z + 0.5
    weights = np.zeros((len(layers), depth.size))
    for i, layer in enumerate(layers):
        inside = (z >= layer.top_m) & (z < layer.bottom_m)
        if not inside.any():
            raise ConfigError(
                f"predictors: layer {layer.name!r} holds no depth level of the store "
                f"(levels {z.min():g} .. {z.max():g} m); choose layers within the store's "
                "depth range."
            )
        thick = np.minimum(bottom, layer.bottom_m) - np.maximum(top, layer.top_m)
        weights[i, order] = np.where(inside, np.clip(thick, 0.0, None), 0.0)
    return weights


def _layer_mean_last(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(..., depth) array -> (..., layer) thickness-weighted means, NaN levels left out."""
    x = np.asarray(x, dtype="float64")
    finite = np.isfinite(x)
    filled = np.where(finite, x, 0.0)
    num = filled @ weights.T
    den = finite.astype("float64") @ weights.T
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / den, np.nan)
    return out.astype("float32")


def _vorticity(u: da.Array, v: da.Array, lat: np.ndarray, lon: np.ndarray) -> da.Array:
    """Relative vorticity (s-1) of (time, layer, lat, lon) currents, chunk-wise.

    Longitudes are one chunk (see the module notes), so their ghost columns (periodic on
    a global grid, NaN otherwise) are added inside each block; latitude ghost rows come
    from ``map_overlap`` only when latitudes span several chunks. The graph is one task
    per block (plus the overlap's row exchange), not a ghosted copy of four arrays.
    """
    lat_rad = np.deg2rad(np.asarray(lat, dtype="float64"))
    lon_rad = np.deg2rad(np.asarray(lon, dtype="float64"))
    is_global = _is_global(np.asarray(lon, dtype="float64"))
    if len(u.chunks[3]) != 1:
        u, v = u.rechunk({3: -1}), v.rechunk({3: -1})
    kwargs = {
        "lat_rad": lat_rad,
        "lat_starts": np.cumsum((0, *u.chunks[2])),
        "lon_rad": lon_rad,
        "is_global": is_global,
        "dtype": "float32",
    }
    if len(u.chunks[2]) == 1:
        return da.map_blocks(_vorticity_padded, u, v, ghost_rows=False, **kwargs)
    return da.map_overlap(
        _vorticity_padded,
        u,
        v,
        depth={0: 0, 1: 0, 2: 1, 3: 0},
        boundary={0: "none", 1: "none", 2: np.nan, 3: "none"},
        ghost_rows=True,
        **kwargs,
    )


def _vorticity_padded(
    u: np.ndarray,
    v: np.ndarray,
    *,
    lat_rad: np.ndarray,
    lat_starts: np.ndarray,
    lon_rad: np.ndarray,
    is_global: bool,
    ghost_rows: bool,
    block_info: dict | None = None,
) -> np.ndarray:
    """Pad one block with its ghost rows/columns, then :func:`_vorticity_block`.

    ``ghost_rows`` says whether ``u``/``v`` already carry one ghost row on each side
    (from ``map_overlap``); otherwise NaN rows are added. ``lat_starts`` are the first
    latitude index of each chunk; the block's own latitudes come from its chunk location.
    """
    i = block_info[0]["chunk-location"][2] if block_info else 0
    lo, hi = int(lat_starts[i]), int(lat_starts[i + 1])
    lat_pad = np.concatenate([[np.nan], lat_rad, [np.nan]])[lo : hi + 2]
    rows = ((0, 0), (0, 0), (0, 0) if ghost_rows else (1, 1), (0, 0))
    u = np.pad(np.asarray(u, "float64"), rows, constant_values=np.nan)
    v = np.pad(np.asarray(v, "float64"), rows, constant_values=np.nan)
    if is_global:
        u = np.concatenate([u[..., -1:], u, u[..., :1]], axis=3)
        v = np.concatenate([v[..., -1:], v, v[..., :1]], axis=3)
        lon_pad = np.concatenate([lon_rad[-1:], lon_rad, lon_rad[:1]])
    else:
        cols = ((0, 0), (0, 0), (0, 0), (1, 1))
        u = np.pad(u, cols, constant_values=np.nan)
        v = np.pad(v, cols, constant_values=np.nan)
        lon_pad = np.concatenate([[np.nan], lon_rad, [np.nan]])
    zeta = _vorticity_block(
        u, v, lat_pad[None, None, :, None], lon_pad[None, None, None, :], is_global=is_global
    )
    return zeta[:, :, :, 1:-1] if ghost_rows else zeta[:, :, 1:-1, 1:-1]


def _vorticity_block(
    u: np.ndarray, v: np.ndarray, lat: np.ndarray, lon: np.ndarray, *, is_global: bool = False
) -> np.ndarray:
    """Vorticity of one block with ghost cells (NaN ghosts where there is no neighbour).

    On a pole row (cos(lat) = 0) of a global grid, the vorticity is the circulation of
    ``u`` around the adjacent latitude circle over the area of the polar cap it bounds
    (Stokes); without a global ring it is NaN.
    """
    u = np.asarray(u, "float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.cos(lat)
        dv = _derivative(np.asarray(v, "float64"), lon, axis=3, wrap=True)
        dw = _derivative(u * cos, lat, axis=2, wrap=False)
        zeta = (dv - dw) / (_RADIUS_M * cos)
        zeta[~(np.isfinite(u) & np.isfinite(v))] = np.nan  # land: NaN, not its neighbours'
        phi = lat[0, 0, :, lat.shape[3] // 2] if lat.size else np.zeros(0)  # not a lon ghost
        for j in np.flatnonzero(~(np.abs(np.cos(phi)) > 1e-9)):
            zeta[:, :, j, :] = np.nan
            ring = [k for k in (j - 1, j + 1) if 0 <= k < phi.size and abs(phi[k]) < abs(phi[j])]
            if not (is_global and ring and u.shape[3] > 2):
                continue
            c1, s1 = np.cos(phi[ring[0]]), abs(np.sin(phi[ring[0]]))
            mean_u = u[:, :, ring[0], 1:-1].mean(axis=-1)  # interior columns: no ghosts
            pole = np.sign(phi[j]) * mean_u * c1 / (_RADIUS_M * (1.0 - s1))
            zeta[:, :, j, :] = np.where(np.isfinite(u[:, :, j, :]), pole[..., None], np.nan)
    return zeta.astype("float32")


def _derivative(f: np.ndarray, x: np.ndarray, *, axis: int, wrap: bool) -> np.ndarray:
    """df/dx: centred, one-sided where a neighbour is NaN, 0 without neighbours.

    A water cell with no water neighbour along the axis (a one-cell channel or bay)
    has no resolved gradient there: 0, so that every water cell keeps a value.
    """

    def shifted(a: np.ndarray, by: int) -> np.ndarray:
        out = np.full_like(a, np.nan)
        src = [slice(None)] * a.ndim
        dst = [slice(None)] * a.ndim
        src[axis] = slice(None, -1) if by > 0 else slice(1, None)
        dst[axis] = slice(1, None) if by > 0 else slice(None, -1)
        out[tuple(dst)] = a[tuple(src)]
        return out

    fm, fp = shifted(f, 1), shifted(f, -1)
    hm, hp = x - shifted(x, 1), shifted(x, -1) - x
    if wrap:  # longitudes across the seam (periodic ghosts)
        hm, hp = np.mod(hm, 2.0 * np.pi), np.mod(hp, 2.0 * np.pi)
    has_m, has_p = np.isfinite(fm), np.isfinite(fp)
    return np.where(
        has_m & has_p,
        (fp - fm) / (hp + hm),
        np.where(
            has_p,
            (fp - f) / hp,
            np.where(has_m, (f - fm) / hm, np.where(np.isfinite(f), 0.0, np.nan)),
        ),
    )


def _is_global(lon: np.ndarray) -> bool:
    if lon.size < 2:
        return False
    step = float(np.median(np.diff(lon)))
    return abs(lon.size * step - 360.0) < 1e-6 * 360.0
