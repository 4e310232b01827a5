"""Predictors: environment feature fields per depth layer, and the matchup at each target.

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

:func:`match_predictors` attaches the features to each row of the targets table: the
time step of the same year and month (else that month's climatology over the store's
years), the nearest grid cell (else the nearest valid cell within ``max_distance_km``),
and reports every row it cannot match with the reason, never dropping one.

Notes for developers
--------------------
* Nothing here rechunks to points. Feature chunks are (1 time, all layers, the store's
  latitude chunk, all longitudes); layer means are one ``map_blocks`` and vorticity one
  ``map_overlap`` (one ghost row/column), so the feature graph grows with chunks.
* The matchup first decides "which cell of which block" for every row in numpy (grid
  coordinates and the small static validity mask ``(layer, lat, lon)`` of the first time
  step, searched with a k-d tree on unit vectors), then builds ONE task per feature block
  touched (one per month and block for climatology rows), all computed in one
  ``dask.compute`` -- on the active distributed Client when there is one. The tasks are
  module-level functions over numpy arrays: picklable, store-agnostic (local or s3).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from pipeline.errors import ConfigError, InputFormatError
from pipeline.targets import Layer

__all__ = [
    "EARTH_RADIUS_KM",
    "MatchupResult",
    "PredictorConfig",
    "feature_names",
    "layer_features",
    "match_predictors",
    "ocean_mask",
]

logger = logging.getLogger(__name__)

#: Earth radius (km) used for vorticity and great-circle distances.
EARTH_RADIUS_KM = 6371.0

_RADIUS_M = EARTH_RADIUS_KM * 1e3
_DERIVED = ("depth", "doy", "speed", "vorticity")
_NOT_FEATURES = ("mask", "deptho")
_ENV_DIMS = ("time", "depth", "lat", "lon")
_MISSING_COLUMNS = ["id", "layer", "lat", "lon", "time", "reason"]
_DERIVED_ATTRS = {
    "speed": {"long_name": "Current speed (layer mean)", "units": "m s-1"},
    "vorticity": {"long_name": "Relative vorticity (layer mean current)", "units": "s-1"},
    "layer_mid_m": {"long_name": "Mid-depth of the layer", "units": "m", "positive": "down"},
    "doy_sin": {"long_name": "sin(2 pi (month - 0.5) / 12)", "units": "1"},
    "doy_cos": {"long_name": "cos(2 pi (month - 0.5) / 12)", "units": "1"},
}


@dataclass(frozen=True, kw_only=True)
class PredictorConfig:
    """Options of :func:`layer_features` and :func:`match_predictors` (defaults here only).

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
        for key in ("variables", "derived"):
            value = getattr(self, key)
            if value is None:
                continue
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ConfigError(
                    f"predictors.{key}: {value!r}; expected a list of names, "
                    f"e.g. {key}=({value!r},) for a single name."
                )
            object.__setattr__(self, key, tuple(value))
        unknown = [d for d in self.derived if d not in _DERIVED]
        if unknown:
            raise ConfigError(
                f"predictors.derived: unknown {', '.join(map(repr, unknown))}; "
                f"valid: {', '.join(_DERIVED)}."
            )
        d = self.max_distance_km
        if isinstance(d, bool) or not isinstance(d, int | float) or not math.isfinite(d) or d < 0:
            raise ConfigError(
                f"predictors.max_distance_km: {d!r}; expected a finite distance >= 0 (km), "
                "e.g. 150.0 (0 keeps only targets whose own cell is valid)."
            )


@dataclass
class MatchupResult:
    """Targets with their predictors, and the rows that could not be matched.

    Attributes
    ----------
    matchup : pandas.DataFrame
        The matched target rows (index and columns of the targets table) plus
        ``env_time`` (time step used, UTC; NaT for climatology), ``env_source``
        (``"year"`` or ``"climatology"``), ``cell_lat``, ``cell_lon`` (centre of the cell
        used), ``distance_km`` (0 for the target's own cell) and one float64 column per
        feature, in :func:`feature_names` order.
    missing : pandas.DataFrame
        ``id, layer, lat, lon, time, reason`` of every other target row (same index).
    """

    matchup: pd.DataFrame
    missing: pd.DataFrame


# ================================================================== feature fields


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
        Depth layers ``[top_m, bottom_m)``, e.g. :data:`pipeline.targets.DEFAULT_LAYERS`.
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
    match_predictors : the features at each target row.
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
    nt, ny, nx = env.sizes["time"], env.sizes["lat"], env.sizes["lon"]
    lat_chunks = _lat_chunks(env)
    chunks = ((1,) * nt, (len(layers),), lat_chunks, (nx,))
    weights = None
    if "depth" in env.dims:
        weights = _layer_weights(np.asarray(env["depth"].values, dtype="float64"), layers)
    means = {v: _to_layers(env[v], weights, chunks) for v in store_vars}
    data: dict[str, tuple[da.Array, dict[str, Any]]] = {
        v: (means[v], _cf_attrs(env[v])) for v in names
    }
    if "speed" in config.derived:
        u, v = means["uo"], means["vo"]
        data["speed"] = (da.sqrt(u * u + v * v).astype("float32"), _DERIVED_ATTRS["speed"])
    if "vorticity" in config.derived:
        zeta = _vorticity(means["uo"], means["vo"], env["lat"].values, env["lon"].values)
        data["vorticity"] = (zeta, _DERIVED_ATTRS["vorticity"])
    if "depth" in config.derived:
        mid = np.array([(layer.top_m + layer.bottom_m) / 2.0 for layer in layers], "float32")
        column = da.from_array(mid, chunks=len(layers))[None, :, None, None]
        data["layer_mid_m"] = (
            da.broadcast_to(column, (nt, len(layers), ny, nx), chunks=chunks),
            _DERIVED_ATTRS["layer_mid_m"],
        )
    if "doy" in config.derived:
        month = pd.DatetimeIndex(env["time"].values).month.to_numpy()
        angle = 2.0 * np.pi * (month - 0.5) / 12.0
        for name, values in (("doy_sin", np.sin(angle)), ("doy_cos", np.cos(angle))):
            column = da.from_array(values.astype("float32"), chunks=1)[:, None, None, None]
            data[name] = (
                da.broadcast_to(column, (nt, len(layers), ny, nx), chunks=chunks),
                _DERIVED_ATTRS[name],
            )
    dims = ("time", "layer", "lat", "lon")
    coords = {
        "time": env["time"].variable,
        "layer": ("layer", np.array([layer.name for layer in layers], dtype=object)),
        "layer_top_m": ("layer", np.array([layer.top_m for layer in layers], dtype="float64")),
        "layer_bottom_m": (
            "layer",
            np.array([layer.bottom_m for layer in layers], dtype="float64"),
        ),
        "lat": env["lat"].variable,
        "lon": env["lon"].variable,
    }
    features = xr.Dataset(
        {name: (dims, arr, attrs) for name, (arr, attrs) in data.items()},
        coords=coords,
        attrs={"features": list(data), "source": env.attrs.get("source")},
    )
    logger.info(
        "features: %d (%s) on %d layer(s), chunks per dim %s",
        len(data),
        ", ".join(data),
        len(layers),
        {d: len(c) for d, c in zip(dims, chunks, strict=True)},
    )
    return features


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


def ocean_mask(features: xr.Dataset) -> xr.DataArray:
    """Cells where every feature is finite at the first time step.

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
    names = feature_names(features)
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
        raise ConfigError("predictors: no layers given; pass e.g. pipeline.targets.DEFAULT_LAYERS.")
    for layer in layers:
        if not (isinstance(layer, Layer) and layer.bottom_m > layer.top_m >= 0):
            raise ConfigError(
                f"predictors: layer {layer!r} must be a Layer with 0 <= top_m < bottom_m."
            )
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names):
        raise ConfigError(f"predictors: layers {names} repeat a name; give each layer once.")


def _select_variables(env: xr.Dataset, config: PredictorConfig) -> tuple[list[str], list[str]]:
    """Feature variables (store names, in order) and every store variable needed."""
    available = sorted(str(v) for v in env.data_vars)
    if config.variables is None:
        names = [
            v
            for v in available
            if v not in _NOT_FEATURES
            and {"lat", "lon"} <= set(env[v].dims)
            and set(env[v].dims) <= set(_ENV_DIMS)
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
        dims = set(env[v].dims)
        if not ({"lat", "lon"} <= dims <= set(_ENV_DIMS)):
            raise ConfigError(
                f"{_where(env)}: variable {v!r} has dims {env[v].dims}; a feature needs lat "
                f"and lon and no dims beyond {_ENV_DIMS}. Drop it from predictors.variables."
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
    return {k: var.attrs[k] for k in ("standard_name", "long_name", "units") if k in var.attrs}


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


def _layer_mean_block(block: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(time, depth, lat, lon) block -> (time, layer, lat, lon) thickness-weighted means."""
    x = np.array(block, dtype="float64")  # a copy: zeroed in place below
    finite = np.isfinite(x)
    x[~finite] = 0.0
    nt, nz = x.shape[:2]
    num = np.matmul(weights, x.reshape(nt, nz, -1))  # BLAS, no transposed copy
    den = np.matmul(weights, finite.reshape(nt, nz, -1).astype("float64"))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / den, np.nan)
    return out.reshape(nt, weights.shape[0], *x.shape[2:]).astype("float32")


def _to_layers(
    var: xr.DataArray, weights: np.ndarray | None, chunks: tuple[tuple[int, ...], ...]
) -> da.Array:
    var = var.transpose(*[d for d in _ENV_DIMS if d in var.dims])
    data = var.data
    if "time" not in var.dims:
        data = data[None]
    if "depth" in var.dims:
        assert weights is not None
        n_layers = weights.shape[0]
        data = da.map_blocks(
            _layer_mean_block,
            data,
            weights,
            chunks=(data.chunks[0], (n_layers,), data.chunks[2], data.chunks[3]),
            dtype="float32",
        )
    else:
        data = data[:, None].astype("float32")
    shape = tuple(sum(c) for c in chunks)
    return da.broadcast_to(data, shape, chunks=chunks)


def _vorticity(u: da.Array, v: da.Array, lat: np.ndarray, lon: np.ndarray) -> da.Array:
    """Relative vorticity (s-1) of (time, layer, lat, lon) currents, chunk-wise."""
    lat = np.asarray(lat, dtype="float64")
    lon = np.asarray(lon, dtype="float64")
    is_global = _is_global(lon)
    lat4 = da.from_array(np.deg2rad(lat), chunks=(u.chunks[2],))[None, None, :, None]
    lon4 = da.from_array(np.deg2rad(lon), chunks=(u.chunks[3],))[None, None, None, :]
    lat4 = da.broadcast_to(lat4, u.shape, chunks=u.chunks)
    lon4 = da.broadcast_to(lon4, u.shape, chunks=u.chunks)
    boundary = {0: "none", 1: "none", 2: np.nan, 3: "periodic" if is_global else np.nan}
    return da.map_overlap(
        _vorticity_block,
        u,
        v,
        lat4,
        lon4,
        depth={0: 0, 1: 0, 2: 1, 3: 1},
        boundary=boundary,
        dtype="float32",
        is_global=is_global,
    )


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


# ================================================================== matchup


def match_predictors(
    targets: pd.DataFrame, features: xr.Dataset, *, config: PredictorConfig | None = None
) -> MatchupResult:
    """Attach the feature values of its month, layer and grid cell to each target row.

    For each row: the time step of the same year and month when the features have one
    (``env_source="year"``), else the mean of that calendar month over the store's years
    (``"climatology"``); the grid cell holding the row, or when that cell is not valid
    for the row's layer (land, or the layer below the sea floor, per :func:`ocean_mask`)
    the nearest valid cell within ``config.max_distance_km`` (great-circle). Rows that
    cannot be matched are returned in ``missing`` with the reason; ``len(matchup) +
    len(missing) == len(targets)``.

    Parameters
    ----------
    targets : pandas.DataFrame
        The canonical targets table: ``id, lat, lon, time`` (UTC), ``layer`` (a name of
        ``features.layer``) and any other columns, which are kept. A dask DataFrame is
        computed first.
    features : xarray.Dataset
        Result of :func:`layer_features` (lazy; read from any store).
    config : PredictorConfig, optional
        ``max_distance_km`` is used here.

    Returns
    -------
    MatchupResult
        ``matchup`` (rows + ``env_time, env_source, cell_lat, cell_lon, distance_km`` +
        one float64 column per feature) and ``missing`` (``id, layer, lat, lon, time,
        reason``).

    Raises
    ------
    ConfigError
        When a row's layer is not a layer of the features (lists them).
    InputFormatError
        When the targets table lacks a required column.

    See Also
    --------
    layer_features : builds the features.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> env = xr.Dataset(
    ...     {"thetao": (("time", "depth", "lat", "lon"), np.arange(8.0).reshape(2, 1, 2, 2))},
    ...     coords={"time": pd.to_datetime(["2020-01-01", "2021-01-01"]), "depth": [5.0],
    ...             "lat": [0.0, 1.0], "lon": [10.0, 11.0]})
    >>> f = layer_features(env, [Layer(0, 10)], config=PredictorConfig(derived=()))
    >>> rows = pd.DataFrame({"id": ["a", "b"], "lat": [0.9, 0.1], "lon": [10.2, 10.9],
    ...     "time": pd.to_datetime(["2020-01-20", "2019-01-05"], utc=True),
    ...     "layer": "0-10m"})
    >>> m = match_predictors(rows, f).matchup
    >>> m[["id", "env_source", "cell_lat", "cell_lon", "thetao"]]
      id   env_source  cell_lat  cell_lon  thetao
    0  a         year       1.0      10.0     2.0
    1  b  climatology       0.0      11.0     3.0
    """
    config = PredictorConfig() if config is None else config
    targets = _check_targets(targets)
    names = feature_names(features)
    if not names:
        raise ConfigError("features: no feature variable (none with a 'layer' dimension).")
    features = (
        features[names].unify_chunks()
        if _all_dask(features, names)
        else (features[names].chunk({"time": 1}).unify_chunks())
    )
    plan = _plan(targets, features, config)
    values = _extract(plan, features, names)
    return _assemble(targets, features, names, plan, values, config)


def _all_dask(features: xr.Dataset, names: list[str]) -> bool:
    return all(features[n].chunks is not None for n in names)


def _check_targets(targets: Any) -> pd.DataFrame:
    if hasattr(targets, "compute") and not isinstance(targets, pd.DataFrame):
        targets = targets.compute()
    required = ["id", "lat", "lon", "time", "layer"]
    missing = [c for c in required if c not in targets.columns]
    if missing:
        raise InputFormatError(
            f"targets table: missing column(s) {', '.join(map(repr, missing))}; expected "
            f"{', '.join(required)} and the target columns, as built by "
            "pipeline.targets.build_targets."
        )
    return targets


@dataclass
class _Plan:
    """Which cell of which block each target row uses (pure numpy, JSON-able)."""

    reason: np.ndarray  # object, "" when matched
    t: np.ndarray  # time index (year rows), -1 otherwise
    month: np.ndarray  # calendar month (climatology rows), 0 otherwise
    layer: np.ndarray
    y: np.ndarray
    x: np.ndarray
    distance_km: np.ndarray
    moved: int = 0


def _plan(targets: pd.DataFrame, features: xr.Dataset, config: PredictorConfig) -> _Plan:
    n = len(targets)
    reason = np.full(n, "", dtype=object)
    lat = pd.to_numeric(targets["lat"], errors="coerce").to_numpy(dtype="float64")
    lon = pd.to_numeric(targets["lon"], errors="coerce").to_numpy(dtype="float64")
    bad_pos = ~(np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90.0))
    reason[bad_pos] = "lat/lon missing or out of range"
    lon = (lon + 180.0) % 360.0 - 180.0
    times = pd.to_datetime(targets["time"], utc=True, errors="coerce")
    reason[(reason == "") & times.isna().to_numpy()] = "time missing"
    # layers
    layer_names = [str(v) for v in features["layer"].values]
    row_layers = targets["layer"].astype(str).to_numpy()
    unknown = sorted(set(row_layers) - set(layer_names))
    if unknown:
        raise ConfigError(
            f"targets: layer(s) {', '.join(map(repr, unknown))} not in the features "
            f"(layers: {', '.join(layer_names)}); build the features with the targets' layers "
            "(layer_features(env, TargetConfig.layers))."
        )
    layer = pd.Index(layer_names).get_indexer(row_layers)
    # time steps: same year and month, else that month's climatology
    t, month = _match_times(times, features)
    ok = reason == ""
    no_month = ok & (t < 0) & (month == 0)
    if no_month.any():
        have = sorted(set(pd.DatetimeIndex(features["time"].values).month))
        for i in np.flatnonzero(no_month):
            reason[i] = (
                f"month {times.iloc[i]:%Y-%m} not in the store (no time step of that month "
                f"in any year; months present: {', '.join(map(str, have))})"
            )
    # cells: the row's own cell, else the nearest valid one within the radius
    glat = np.asarray(features["lat"].values, dtype="float64")
    glon = np.asarray(features["lon"].values, dtype="float64")
    y, y_in = _nearest_index(np.where(np.isfinite(lat), lat, 0.0), glat, periodic=False)
    x, x_in = _nearest_index(np.where(np.isfinite(lon), lon, 0.0), glon, periodic=_is_global(glon))
    ok = reason == ""
    valid = np.asarray(ocean_mask(features).values, dtype=bool) if ok.any() else None
    distance = np.zeros(n)
    moved = 0
    if valid is not None:
        direct = ok & y_in & x_in
        direct[direct] = valid[layer[direct], y[direct], x[direct]]
        search = ok & ~direct
        radius = float(config.max_distance_km)
        for lay in np.unique(layer[search]):
            rows = np.flatnonzero(search & (layer == lay))
            cy, cx, dist = _nearest_valid(lat[rows], lon[rows], valid[lay], glat, glon, radius)
            found = np.isfinite(dist)
            hit = rows[found]
            y[hit], x[hit], distance[hit] = cy[found], cx[found], dist[found]
            moved += int(found.sum())
            for i in rows[~found]:
                deeper = y_in[i] and x_in[i] and valid[:, y[i], x[i]].any()
                reason[i] = (
                    f"layer below the sea floor (no cell deep enough within {radius:g} km)"
                    if deeper
                    else f"no valid cell within {radius:g} km (land or outside the grid)"
                )
    return _Plan(reason, t, month, layer, y, x, distance, moved)


def _match_times(times: pd.Series, features: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Time index of the same year-month (nearest), else the month for climatology."""
    n = len(times)
    env = pd.DatetimeIndex(features["time"].values)
    if env.tz is not None:
        env = env.tz_convert("UTC").tz_localize(None)
    order = np.argsort(env.values, kind="stable")
    env_sorted = env.values[order].astype("datetime64[ns]").astype("int64")
    env_ym = (env.year * 12 + env.month - 1).to_numpy()[order]
    valid = times.notna().to_numpy()
    row = times.dt.tz_convert("UTC").dt.tz_localize(None)
    row_ns = np.where(valid, row.to_numpy(dtype="datetime64[ns]").astype("int64"), 0)
    row_ym = np.where(valid, (row.dt.year * 12 + row.dt.month - 1).fillna(0).to_numpy(), -1)
    t = np.full(n, -1, dtype="int64")
    if env_sorted.size:
        after = np.searchsorted(env_sorted, row_ns, side="left")
        before = np.clip(after - 1, 0, env_sorted.size - 1)
        after = np.clip(after, 0, env_sorted.size - 1)
        same_a = valid & (env_ym[after] == row_ym)
        same_b = valid & (env_ym[before] == row_ym)
        nearer_b = np.abs(row_ns - env_sorted[before]) < np.abs(row_ns - env_sorted[after])
        use_b = same_b & (~same_a | nearer_b)
        t = np.where(use_b, order[before], np.where(same_a, order[after], -1))
    months_present = set(int(m) for m in env.month)
    row_month = np.where(valid, row_ym % 12 + 1, 0)
    month = np.where((t < 0) & np.isin(row_month, list(months_present)), row_month, 0)
    return t, month.astype("int64")


def _is_global(lon: np.ndarray) -> bool:
    if lon.size < 2:
        return False
    step = float(np.median(np.diff(lon)))
    return abs(lon.size * step - 360.0) < 1e-6 * 360.0


def _nearest_index(
    value: np.ndarray, grid: np.ndarray, *, periodic: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest grid index of each value and whether the value lies inside that cell."""
    nxt = np.clip(np.searchsorted(grid, value), 0, grid.size - 1)
    prv = np.clip(nxt - 1, 0, grid.size - 1)
    if periodic:
        dn = np.abs((value - grid[nxt] + 180.0) % 360.0 - 180.0)
        dp = np.abs((value - grid[prv] + 180.0) % 360.0 - 180.0)
        d0 = np.abs((value - grid[0] + 180.0) % 360.0 - 180.0)
        idx = np.where(dp <= dn, prv, nxt)
        best = np.minimum(dp, dn)
        idx = np.where(d0 < best, 0, idx)
        return idx, np.ones(value.shape, dtype=bool)
    dn, dp = np.abs(value - grid[nxt]), np.abs(value - grid[prv])
    idx = np.where(dp <= dn, prv, nxt)
    half = (np.diff(grid).max() / 2.0 if grid.size > 1 else 0.5) * (1.0 + 1e-9)
    return idx, np.minimum(dn, dp) <= half


def _unit(lat_deg: np.ndarray, lon_deg: np.ndarray) -> np.ndarray:
    phi, lam = np.deg2rad(lat_deg), np.deg2rad(lon_deg)
    return np.column_stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)])


def _great_circle_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray):
    p1, p2 = np.deg2rad(lat1), np.deg2rad(lat2)
    dphi, dlam = p2 - p1, np.deg2rad(lon2 - lon1)
    h = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlam / 2) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def _nearest_valid(
    lat: np.ndarray,
    lon: np.ndarray,
    valid: np.ndarray,
    glat: np.ndarray,
    glon: np.ndarray,
    radius_km: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest valid cell (y, x, km) of each point within the radius; km NaN when none."""
    from scipy.spatial import cKDTree

    n = lat.size
    cy, cx, dist = np.zeros(n, "int64"), np.zeros(n, "int64"), np.full(n, np.nan)
    vy, vx = np.nonzero(valid)
    if vy.size == 0 or n == 0:
        return cy, cx, dist
    tree = cKDTree(_unit(glat[vy], glon[vx]))
    chord = 2.0 * math.sin(min(radius_km / EARTH_RADIUS_KM, math.pi) / 2.0)
    _, k = tree.query(_unit(lat, lon), distance_upper_bound=chord * (1.0 + 1e-12))
    found = k < vy.size
    cy[found], cx[found] = vy[k[found]], vx[k[found]]
    km = _great_circle_km(lat[found], lon[found], glat[cy[found]], glon[cx[found]])
    dist[found] = np.where(km <= radius_km, km, np.nan)
    return cy, cx, dist


def _block_index(chunks: tuple[int, ...], index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Block number and offset inside the block of each index along one axis."""
    starts = np.concatenate([[0], np.cumsum(chunks)[:-1]])
    block = np.searchsorted(starts, index, side="right") - 1
    return block, index - starts[block]


def _pick_block(
    blocks: list[np.ndarray], it: np.ndarray, il: np.ndarray, iy: np.ndarray, ix: np.ndarray
) -> np.ndarray:
    """Values (row, feature) at the given positions of one block per feature."""
    return np.stack([np.asarray(b)[it, il, iy, ix].astype("float64") for b in blocks], axis=1)


def _pick_climatology(
    blocks: list[list[np.ndarray]],
    positions: list[np.ndarray],
    il: np.ndarray,
    iy: np.ndarray,
    ix: np.ndarray,
) -> np.ndarray:
    """Mean over the month's time steps (NaN skipped) at the given positions."""
    out = np.empty((il.size, len(blocks)))
    for j, per_time_block in enumerate(blocks):
        steps = [
            np.asarray(b)[pos][:, il, iy, ix].astype("float64")
            for b, pos in zip(per_time_block, positions, strict=True)
        ]
        stacked = np.concatenate(steps, axis=0)
        count = np.isfinite(stacked).sum(axis=0)
        total = np.where(np.isfinite(stacked), stacked, 0.0).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, j] = np.where(count > 0, total / count, np.nan)
    return out


def _extract(plan: _Plan, features: xr.Dataset, names: list[str]) -> np.ndarray:
    """Feature values (row, feature) of the matched rows, one task per block touched."""
    values = np.full((plan.reason.size, len(names)), np.nan)
    ok = plan.reason == ""
    if not ok.any():
        return values
    tchunks, lchunks, ychunks, xchunks = features[names[0]].chunks
    arrays = [features[n].data for n in names]
    lb, il = _block_index(lchunks, plan.layer)
    yb, iy = _block_index(ychunks, plan.y)
    xb, ix = _block_index(xchunks, plan.x)
    tb, it = _block_index(tchunks, np.maximum(plan.t, 0))
    env_month = pd.DatetimeIndex(features["time"].values).month.to_numpy()
    tasks, rows_of_task = [], []
    year_rows = ok & (plan.t >= 0)
    keys = pd.DataFrame({"tb": tb, "lb": lb, "yb": yb, "xb": xb, "month": plan.month})
    for key, rows in keys[year_rows].groupby(["tb", "lb", "yb", "xb"]).indices.items():
        rows = np.flatnonzero(year_rows)[rows]
        tb_, lb_, yb_, xb_ = (int(k) for k in key)
        blocks = [a.blocks[tb_, lb_, yb_, xb_] for a in arrays]
        tasks.append(
            dask.delayed(_pick_block, pure=True)(blocks, it[rows], il[rows], iy[rows], ix[rows])
        )
        rows_of_task.append(rows)
    clim_rows = ok & (plan.t < 0)
    for key, rows in keys[clim_rows].groupby(["month", "lb", "yb", "xb"]).indices.items():
        rows = np.flatnonzero(clim_rows)[rows]
        month, lb_, yb_, xb_ = (int(k) for k in key)
        steps_tb, steps_it = _block_index(tchunks, np.flatnonzero(env_month == month))
        time_blocks = [int(b) for b in np.unique(steps_tb)]
        positions = [steps_it[steps_tb == b] for b in time_blocks]
        blocks = [[a.blocks[b, lb_, yb_, xb_] for b in time_blocks] for a in arrays]
        tasks.append(
            dask.delayed(_pick_climatology, pure=True)(
                blocks, positions, il[rows], iy[rows], ix[rows]
            )
        )
        rows_of_task.append(rows)
    n_clim = int(clim_rows.sum())
    logger.info(
        "matchup: %d rows, %d chunks touched, %d by climatology, %d moved to nearest valid cell",
        int(ok.sum()),
        len(tasks),
        n_clim,
        plan.moved,
    )
    results = dask.compute(*tasks)
    for rows, result in zip(rows_of_task, results, strict=True):
        values[rows] = result
    return values


def _assemble(
    targets: pd.DataFrame,
    features: xr.Dataset,
    names: list[str],
    plan: _Plan,
    values: np.ndarray,
    config: PredictorConfig,
) -> MatchupResult:
    reason = plan.reason.copy()
    ok = reason == ""
    nonfinite = ok & ~np.isfinite(values).all(axis=1)
    for i in np.flatnonzero(nonfinite):
        bad = [n for n, v in zip(names, values[i], strict=True) if not np.isfinite(v)]
        reason[i] = (
            f"feature(s) {', '.join(bad)} not finite at the matched cell and time "
            "(valid at the first time step only)"
        )
    ok = reason == ""
    glat = np.asarray(features["lat"].values, dtype="float64")
    glon = np.asarray(features["lon"].values, dtype="float64")
    env_times = pd.DatetimeIndex(features["time"].values)
    if env_times.tz is None:
        env_times = env_times.tz_localize("UTC")
    matched = targets.iloc[np.flatnonzero(ok)].copy()
    t = plan.t[ok]
    env_time = pd.Series(env_times[np.maximum(t, 0)], index=matched.index)
    matched["env_time"] = env_time.where(t >= 0).astype("datetime64[ns, UTC]")
    matched["env_source"] = np.where(t >= 0, "year", "climatology")
    matched["cell_lat"] = glat[plan.y[ok]]
    matched["cell_lon"] = glon[plan.x[ok]]
    matched["distance_km"] = plan.distance_km[ok]
    for j, name in enumerate(names):
        matched[name] = values[ok, j].astype("float64")
    rest = targets.iloc[np.flatnonzero(~ok)]
    missing = pd.DataFrame(
        {c: rest[c] for c in _MISSING_COLUMNS if c != "reason"}, index=rest.index
    )
    missing["reason"] = reason[~ok].astype(str)
    if len(missing):
        logger.info(
            "matchup: %d row(s) not matched: %s",
            len(missing),
            missing["reason"].str.split(" \\(").str[0].value_counts().to_dict(),
        )
    return MatchupResult(matchup=matched, missing=missing)
