"""The output grid of a run, and lazy regridding of each source onto it.

Every environment source keeps its own grid (1/12 deg physics, 1/4 deg biogeochemistry,
4 km ocean colour, 1 deg climatologies); the run chooses **one output grid**
(:class:`GridConfig`), on which the features are built, the matchup reads the
predictors and the fields are written, so training and prediction see the same values.

Regridding (:func:`regrid`) uses `xarray-regrid <https://github.com/xarray-contrib/xarray-regrid>`_
(pure Python, dask-friendly; ``xesmf`` needs ESMF, which pip cannot install):

- **conservative** (area-weighted, on the sphere) when the source is finer than the
  output grid: an output cell is the area-weighted mean of the source cells it overlaps,
  **NaN-aware**: a coastal output cell takes the mean of its ocean sub-cells (land is
  left out of the weights), and is NaN only when all of them are land;
- **linear** (bilinear in lat/lon) when the source is as coarse or coarser, NaN-aware in
  the same way (the interpolation weights of land neighbours are dropped and the others
  renormalised), after extending the source's ocean by one cell over its land (the mean
  of its ocean neighbours, "sea over land"), so that an output ocean cell on a coast the
  coarse source draws as land still gets a value; periodic across the date line for a
  global source; ``nearest`` on request.

The conservative weights (one dense matrix per axis, the library's factorised scheme
with its spherical correction) are computed once per (source axis, output axis) and
cached for the process; applying them is one ``xarray.dot`` per variable, so the graph
grows with the source's chunks, never with its cells.

The **ocean mask** of the output grid is that of one source: the finest source with
depth levels (physics) unless ``grid.mask`` names another; see
:func:`pipeline.predictors.environment.build_features`.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import xarray as xr

from pipeline.config import check_choice, check_positive
from pipeline.errors import ConfigError

__all__ = [
    "DEFAULT_BOUNDS",
    "GridConfig",
    "axis_step",
    "check_coverage",
    "grid_of",
    "output_grid",
    "regrid",
]

logger = logging.getLogger(__name__)

#: Default output extent (lon_min, lon_max, lat_min, lat_max; cell edges, degrees): the
#: global Copernicus Marine grids start at 80 deg S.
DEFAULT_BOUNDS: tuple[float, float, float, float] = (-180.0, 180.0, -80.0, 90.0)

_METHODS = ("auto", "conservative", "linear", "nearest")


@dataclass(frozen=True, kw_only=True)
class GridConfig:
    """The output grid of a run (``grid:`` section of the run file).

    Attributes
    ----------
    resolution : float, optional
        Cell size in degrees (e.g. 0.25). With ``bounds`` or alone (global,
        :data:`DEFAULT_BOUNDS`). Cell centres at ``edge + resolution / 2 + k resolution``.
    bounds : (float, float, float, float), optional
        ``[lon_min, lon_max, lat_min, lat_max]``: the outer cell edges (degrees).
    like : str, optional
        Name of an environment source whose grid is used as it is. With no
        ``resolution`` and no ``like``, the grid of the first source is used (logged).
    mask : str, optional
        Source whose valid cells make the ocean mask of the output grid (default: the
        finest source with depth levels, else the finest source).
    method : {"auto", "conservative", "linear", "nearest"}
        Regridding of every source; ``auto`` is conservative from a finer source, linear
        from an equal or coarser one.
    """

    resolution: float | None = None
    bounds: tuple[float, float, float, float] | None = None
    like: str | None = None
    mask: str | None = None
    method: Literal["auto", "conservative", "linear", "nearest"] = "auto"

    def __post_init__(self) -> None:
        """Check the options; raise ConfigError naming the key."""
        if self.resolution is not None:
            check_positive("grid.resolution", self.resolution, unit="degrees")
            object.__setattr__(self, "resolution", float(self.resolution))
        if self.bounds is not None:
            try:
                bounds = tuple(float(b) for b in self.bounds)
            except (TypeError, ValueError) as err:
                raise ConfigError(
                    f"grid.bounds: {self.bounds!r}; expected [lon_min, lon_max, lat_min, "
                    "lat_max] in degrees, e.g. [-30, 10, 20, 60]."
                ) from err
            lon0, lon1, lat0, lat1 = bounds if len(bounds) == 4 else (np.nan,) * 4
            if not (-180 <= lon0 < lon1 <= 360 and -90 <= lat0 < lat1 <= 90):
                raise ConfigError(
                    f"grid.bounds: {self.bounds!r}; expected [lon_min, lon_max, lat_min, "
                    "lat_max] with lon_min < lon_max, lat_min < lat_max, latitudes in "
                    "[-90, 90], e.g. [-30, 10, 20, 60]."
                )
            if self.resolution is None:
                raise ConfigError("grid.bounds needs grid.resolution (e.g. 0.25).")
            object.__setattr__(self, "bounds", bounds)
        if self.like is not None and (self.resolution is not None or self.bounds is not None):
            raise ConfigError(
                f"grid.like ({self.like!r}) takes that source's grid as it is; drop "
                "grid.resolution and grid.bounds, or drop grid.like."
            )
        check_choice("grid.method", self.method, _METHODS)


def output_grid(config: GridConfig) -> xr.Dataset:
    """Build the output grid of ``resolution`` (and ``bounds``) as a coordinate Dataset.

    Parameters
    ----------
    config : GridConfig
        With ``resolution`` set (``like`` grids come from :func:`grid_of`).

    Returns
    -------
    xarray.Dataset
        No variables; coords ``lat`` and ``lon`` (cell centres, ascending, CF attrs);
        ``attrs["grid_resolution_deg"]`` and ``attrs["grid_bounds"]`` (degrees).

    Examples
    --------
    >>> g = output_grid(GridConfig(resolution=0.5, bounds=(-1, 1, 10, 11)))
    >>> g.lon.values.tolist(), g.lat.values.tolist()
    ([-0.75, -0.25, 0.25, 0.75], [10.25, 10.75])
    """
    if config.resolution is None:
        raise ConfigError("grid: give grid.resolution (e.g. 0.25) or grid.like (a source).")
    step = config.resolution
    lon0, lon1, lat0, lat1 = config.bounds or DEFAULT_BOUNDS
    nx = round((lon1 - lon0) / step)
    ny = round((lat1 - lat0) / step)
    if abs(nx * step - (lon1 - lon0)) > 1e-6 or abs(ny * step - (lat1 - lat0)) > 1e-6:
        raise ConfigError(
            f"grid: bounds {[lon0, lon1, lat0, lat1]} are not a whole number of "
            f"{step:g} deg cells; adjust grid.bounds or grid.resolution."
        )
    lon = lon0 + step * (np.arange(nx) + 0.5)
    lat = lat0 + step * (np.arange(ny) + 0.5)
    lon = np.round((lon + 180.0) % 360.0 - 180.0, 10)
    if np.any(np.diff(lon) <= 0):
        lon = np.sort(lon)
    return _grid_dataset(lat, lon, step, [lon0, lon1, lat0, lat1])


def grid_of(ds: xr.Dataset | xr.DataArray) -> xr.Dataset:
    """Return the grid (``lat``, ``lon`` coordinates) of a normalised Dataset.

    Parameters
    ----------
    ds : xarray.Dataset or xarray.DataArray
        With ascending ``lat`` and ``lon``.

    Returns
    -------
    xarray.Dataset
        As :func:`output_grid` returns.
    """
    lat = np.asarray(ds["lat"].values, dtype="float64")
    lon = np.asarray(ds["lon"].values, dtype="float64")
    step = max(axis_step(lat), axis_step(lon))
    bounds = [
        float(lon[0] - axis_step(lon) / 2),
        float(lon[-1] + axis_step(lon) / 2),
        float(lat[0] - axis_step(lat) / 2),
        float(lat[-1] + axis_step(lat) / 2),
    ]
    return _grid_dataset(lat, lon, step, bounds)


def axis_step(values: np.ndarray) -> float:
    """Median spacing of a coordinate axis (degrees); 0 for a single value.

    Examples
    --------
    >>> axis_step(np.array([0.0, 0.25, 0.5]))
    0.25
    """
    values = np.asarray(values, dtype="float64")
    return float(np.round(np.median(np.diff(values)), 10)) if values.size > 1 else 0.0


def check_coverage(source: xr.Dataset, grid: xr.Dataset, *, where: str) -> None:
    """Raise when the source's grid does not cover the output grid (says which part).

    A source covers an axis when its cell edges (centres +/- half a step) reach the
    output's outer cell edges; a global source (360 deg of longitude) covers every
    longitude.

    Raises
    ------
    ConfigError
        Naming the source, the missing latitudes/longitudes and both extents.
    """
    missing: list[str] = []
    for axis, unit in (("lat", "N"), ("lon", "E")):
        src = np.asarray(source[axis].values, dtype="float64")
        out = np.asarray(grid[axis].values, dtype="float64")
        s_step, o_step = axis_step(src), axis_step(out)
        if axis == "lon" and src.size > 1 and abs(src.size * s_step - 360.0) < 1e-3 * 360:
            continue
        lo, hi = src[0] - s_step / 2, src[-1] + s_step / 2
        need_lo, need_hi = out[0] - o_step / 2, out[-1] + o_step / 2
        tol = max(s_step, o_step) * 0.5 + 1e-6
        if need_lo < lo - tol:
            missing.append(f"{axis} {need_lo:g}..{lo:g} {unit}")
        if need_hi > hi + tol:
            missing.append(f"{axis} {hi:g}..{need_hi:g} {unit}")
    if missing:
        raise ConfigError(
            f"{where}: the source does not cover the output grid: {'; '.join(missing)} "
            f"missing (source lat {float(source.lat.min()):g}..{float(source.lat.max()):g}, "
            f"lon {float(source.lon.min()):g}..{float(source.lon.max()):g}; output lat "
            f"{float(grid.lat.min()):g}..{float(grid.lat.max()):g}, lon "
            f"{float(grid.lon.min()):g}..{float(grid.lon.max()):g}). Use a source that "
            "covers the output grid, or set grid.bounds inside it."
        )


def regrid(
    ds: xr.Dataset,
    grid: xr.Dataset,
    *,
    method: str = "auto",
    where: str = "source",
) -> xr.Dataset:
    """Regrid every variable of a normalised Dataset onto the output grid, lazily.

    Parameters
    ----------
    ds : xarray.Dataset
        Dims ``(..., lat, lon)``, lat/lon ascending, NaN on land; numpy or dask.
    grid : xarray.Dataset
        From :func:`output_grid` or :func:`grid_of`.
    method : {"auto", "conservative", "linear", "nearest"}
        ``auto``: conservative when the source is finer than the output, else linear.
    where : str
        Name of the source, in the log and errors.

    Returns
    -------
    xarray.Dataset
        On ``grid``'s lat/lon (exactly its coordinate values), other dims as they were,
        float32 where the input was; the input itself when the grids are equal.

    Raises
    ------
    ConfigError
        When the source does not cover the output grid (see :func:`check_coverage`).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> src = xr.Dataset({"t": (("lat", "lon"), np.array([[1.0, 3.0], [np.nan, 5.0]]))},
    ...                  coords={"lat": [0.25, 0.75], "lon": [0.25, 0.75]})
    >>> out = regrid(src, output_grid(GridConfig(resolution=1.0, bounds=(0, 1, 0, 1))))
    >>> round(float(out.t[0, 0]), 6)  # the area-weighted mean of the 3 ocean sub-cells
    2.999949
    """
    if _same_grid(ds, grid):
        return ds
    check_coverage(ds, grid, where=where)
    src_step = _resolution(ds)
    out_step = _resolution(grid)
    chosen = method
    if method == "auto":
        chosen = "conservative" if src_step < out_step * (1 - 1e-6) else "linear"
    logger.info("%s: regridding %g deg -> %g deg (%s)", where, src_step, out_step, chosen)
    if chosen == "conservative":
        out = _conservative(ds, grid)
    elif chosen in ("linear", "nearest"):
        out = _interpolate(ds, grid, chosen)
    else:
        raise ConfigError(f"grid.method: {method!r}; valid: {', '.join(_METHODS)}.")
    out = out.assign_coords(lat=grid["lat"].variable, lon=grid["lon"].variable)
    for name, var in ds.data_vars.items():
        out[name].attrs = dict(var.attrs)
    out.attrs = dict(ds.attrs)
    return out


# --------------------------------------------------------------------------- helpers


def _grid_dataset(lat: np.ndarray, lon: np.ndarray, step: float, bounds: list[float]) -> xr.Dataset:
    return xr.Dataset(
        coords={
            "lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": ("lon", lon, {"standard_name": "longitude", "units": "degrees_east"}),
        },
        attrs={"grid_resolution_deg": float(step), "grid_bounds": [float(b) for b in bounds]},
    )


def _resolution(ds: xr.Dataset) -> float:
    """Cell size (degrees, the coarser axis); the grid's own attribute when it has one."""
    if "grid_resolution_deg" in ds.attrs:
        return float(ds.attrs["grid_resolution_deg"])
    return max(axis_step(ds.lat.values), axis_step(ds.lon.values))


def _same_grid(ds: xr.Dataset, grid: xr.Dataset) -> bool:
    return all(
        ds.sizes.get(a) == grid.sizes[a]
        and np.allclose(ds[a].values, grid[a].values, rtol=0, atol=1e-9)
        for a in ("lat", "lon")
    )


_WEIGHTS: dict[tuple[Any, ...], xr.DataArray] = {}


def _axis_key(values: np.ndarray) -> tuple[Any, ...]:
    values = np.ascontiguousarray(values, dtype="float64")
    return (values.size, hash(values.tobytes()))


def _conservative_weights(axis: str, source: np.ndarray, target: np.ndarray) -> xr.DataArray:
    """Return the library's 1-D overlap weights (spherical correction for lat), cached."""
    from xarray_regrid.methods import conservative
    from xarray_regrid.utils import create_dot_dataarray

    key = (axis, _axis_key(source), _axis_key(target))
    if key not in _WEIGHTS:
        weights = conservative.get_weights(source, target)
        dot = create_dot_dataarray(weights, axis, target, source)
        if axis == "lat":
            dot = conservative.apply_spherical_correction(dot, "lat")
        _WEIGHTS[key] = dot
        logger.debug("conservative weights %s: %d -> %d (computed)", axis, source.size, target.size)
    return _WEIGHTS[key]


def _conservative(ds: xr.Dataset, grid: xr.Dataset) -> xr.Dataset:
    src = {a: np.asarray(ds[a].values, dtype="float64") for a in ("lat", "lon")}
    tgt = {a: np.asarray(grid[a].values, dtype="float64") for a in ("lat", "lon")}
    weights = {a: _conservative_weights(a, src[a], tgt[a]) for a in ("lat", "lon")}
    out: dict[Hashable, xr.DataArray] = {}
    for name, var in ds.data_vars.items():
        if not {"lat", "lon"} <= set(var.dims):
            out[name] = var
            continue
        formatted = {a: _format_weights(weights[a], var, a) for a in ("lat", "lon")}
        # assign the source's exact coordinates: xr.dot aligns on them
        var = var.assign_coords({a: src[a] for a in ("lat", "lon")})
        out[name] = _apply_weights(var, formatted)
    return xr.Dataset(out)


def _apply_weights(var: xr.DataArray, weights: dict[str, xr.DataArray]) -> xr.DataArray:
    """Apply the weights as the library's NaN-aware ``apply_weights``, without 0/0.

    An output cell is ``sum(w x) / sum(w over the finite x)``; with no finite sub-cell
    the denominator is masked first, so land gives NaN without a division warning.
    """
    dims = list(weights)
    arrays = list(weights.values())
    valid = xr.dot(var.notnull(), *arrays, dim=dims, optimize=True)
    total = xr.dot(var.fillna(0), *arrays, dim=dims, optimize=True)
    out = total / valid.where(valid >= 1e-6)
    return out.rename({f"target_{d}": d for d in dims}).transpose(*var.dims)


def _format_weights(weights: xr.DataArray, var: xr.DataArray, axis: str) -> xr.DataArray:
    """Weights in the data's precision, chunked like its axis (dense: no sparse blocks)."""
    out = weights.astype(np.result_type(np.float32, var.dtype))
    if var.chunks is not None:
        sizes = var.chunksizes[axis]
        out = out.chunk({axis: sizes, f"target_{axis}": max(sizes)})
    return out


def _sea_over_land(x: np.ndarray) -> np.ndarray:
    """Fill each NaN cell that has ocean neighbours with their mean (3 x 3, last two axes)."""
    from scipy.ndimage import uniform_filter

    finite = np.isfinite(x)
    size = (1,) * (x.ndim - 2) + (3, 3)
    total = uniform_filter(np.where(finite, x, 0.0).astype("float64"), size=size, mode="nearest")
    count = uniform_filter(finite.astype("float64"), size=size, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 1e-9, total / count, np.nan)
    return np.where(finite, x, mean).astype(x.dtype)


def _interpolate(ds: xr.Dataset, grid: xr.Dataset, method: str) -> xr.Dataset:
    """NaN-aware interpolation: land neighbours dropped, the other weights renormalised."""
    lon = np.asarray(ds.lon.values, dtype="float64")
    step = axis_step(lon)
    if lon.size > 1 and abs(lon.size * step - 360.0) < 1e-3 * 360:  # global: wrap the seam
        ds = xr.concat(
            [
                ds.isel(lon=[-1]).assign_coords(lon=[lon[-1] - 360.0]),
                ds,
                ds.isel(lon=[0]).assign_coords(lon=[lon[0] + 360.0]),
            ],
            dim="lon",
        )
    lat = np.asarray(ds.lat.values, dtype="float64")
    if lat.size > 1:  # the edge rows repeated one step out: the edge cells' outer halves
        lat_step = axis_step(lat)
        ds = xr.concat(
            [
                ds.isel(lat=[0]).assign_coords(lat=[lat[0] - lat_step]),
                ds,
                ds.isel(lat=[-1]).assign_coords(lat=[lat[-1] + lat_step]),
            ],
            dim="lat",
        )
    # a source as coarse as the output or coarser is small per map: one lat/lon chunk keeps
    # the interpolation one task per (time, layer) block instead of one per chunk pair
    ds = ds.chunk({"lat": -1, "lon": -1}) if any(v.chunks for v in ds.data_vars.values()) else ds
    target = {"lat": grid["lat"].values, "lon": grid["lon"].values}
    out: dict[Hashable, xr.DataArray] = {}
    for name, var in ds.data_vars.items():
        if not {"lat", "lon"} <= set(var.dims):
            out[name] = var
            continue
        if method == "nearest":
            out[name] = var.interp(target, method="nearest")
            continue
        # sea-over-land by one source cell (the NaN-aware 3 x 3 mean), so that an ocean
        # cell of the output next to the coast of a coarser source still has neighbours
        var = xr.apply_ufunc(
            _sea_over_land,
            var,
            input_core_dims=[["lat", "lon"]],
            output_core_dims=[["lat", "lon"]],
            dask="parallelized",
            output_dtypes=[var.dtype],
        ).transpose(*var.dims)
        valid = var.notnull().astype(var.dtype if var.dtype.kind == "f" else "float32")
        num = var.fillna(0).interp(target, method="linear")
        den = valid.interp(target, method="linear")
        out[name] = (num / den.where(den > 1e-6)).astype(var.dtype)  # no 0/0 on land
    return xr.Dataset(out)
