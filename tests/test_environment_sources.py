"""Environment sources on their own grids, brought onto one output grid.

Real files (``../shared/data/copernicus_like``): the CEPHALOPOD 1-degree monthly
climatologies (latitude descending in one, ascending in the other, time 1..12 with
units no calendar reads) and a CMEMS IBI NetCDF subset (int16 packed, depth positive
down), read through catalog entries; synthetic grids for the regridding properties.
"""

from __future__ import annotations

import logging
import warnings

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline.catalog import open_catalog, read_entry
from pipeline.errors import ConfigError
from pipeline.predictors import (
    GridConfig,
    PredictorConfig,
    build_features,
    match_predictors,
    output_grid,
    regrid,
)
from pipeline.sources import EnvironmentSource, open_source
from pipeline.targets import Layer

CLIM = "copernicus_like/monthly_1deg_climatologies"
IBI = "copernicus_like/cmems_ibi_netcdf_and_argo"


@pytest.fixture(scope="module")
def climatologies(shared_data):
    return open_catalog("climatologies", folder=str(shared_data / CLIM))


def _sst(cat):
    spec = EnvironmentSource(
        entry="sst_pathfinder", time="climatology", depth="surface", variables={"LAYER": "sst"}
    )
    return open_source(read_entry(cat, spec.entry), spec)


def _diatoms(cat):
    spec = EnvironmentSource(
        entry="diatoms_cmems", time="climatology", depth="surface", variables={"LAYER": "diato"}
    )
    return open_source(read_entry(cat, spec.entry), spec)


@pytest.mark.parametrize(
    ("lat", "lon", "month", "sst", "diato"),
    [
        (31.5, -64.5, 7, 26.86, 0.0050),
        (59.5, -20.5, 5, 9.05, 0.169),
        (0.5, -140.5, 1, 25.12, 0.0103),
    ],
)
def test_real_climatologies_read_through_the_catalog_give_the_published_spot_values(
    climatologies, lat, lon, month, sst, diato
):
    s, d = _sst(climatologies).data, _diatoms(climatologies).data
    for ds in (s, d):  # normalised: lat ascending (DIATO is stored descending), months 1..12
        assert np.all(np.diff(ds.lat.values) > 0)
        assert ds.month.values.tolist() == list(range(1, 13))
    at = {"lat": lat, "lon": lon}
    got_sst = float(s.sst.sel(month=month).sel(at, method="nearest"))
    got_diato = float(d.diato.sel(month=month).sel(at, method="nearest"))
    assert got_sst == pytest.approx(sst, abs=0.005)
    assert got_diato == pytest.approx(diato, rel=0.02)


def test_a_real_cmems_netcdf_subset_decodes_packed_ints_and_dates(shared_data):
    cat = open_catalog("climatologies", folder=str(shared_data / IBI))
    spec = EnvironmentSource(entry="local_folder", options={"file": "ibi-argo-7900573.nc"})
    src = open_source(read_entry(cat, spec.entry, **spec.options), spec).data
    assert src.thetao.dtype.kind == "f"  # int16 * scale_factor + add_offset
    assert np.all(np.diff(src.depth.values) > 0)
    assert float(src.depth[0]) == pytest.approx(0.494, abs=1e-3)
    assert pd.DatetimeIndex(src.time.values).strftime("%Y-%m-%d").tolist() == [
        "2022-02-06",
        "2022-02-07",
    ]
    surface = src.thetao.isel(depth=0).values
    assert np.nanmin(surface) >= 12.8
    assert np.nanmax(surface) <= 14.5


def test_features_from_a_dated_subset_and_two_climatologies_on_one_output_grid(
    shared_data, climatologies
):
    cat = open_catalog("climatologies", folder=str(shared_data / IBI))
    ibi = EnvironmentSource(
        entry="local_folder",
        name="ibi",
        options={"file": "ibi-argo-7900573.nc"},
        variables=["thetao", "so"],
    )
    sources = [
        open_source(read_entry(cat, ibi.entry, **ibi.options), ibi),
        _sst(climatologies),
        _diatoms(climatologies),
    ]
    grid = GridConfig(resolution=0.25, bounds=(-10.25, -9.5, 43.75, 44.25))
    f = build_features(sources, [Layer(0, 100)], grid=grid, config=PredictorConfig(derived=()))
    assert f.attrs["features"] == ["diato", "so", "sst", "thetao"]
    assert (f.sizes["lat"], f.sizes["lon"], f.sizes["time"]) == (2, 3, 1)
    assert f.attrs["mask_source"] == "ibi"  # the only source with depth levels
    assert str(f.time_kind_ibi.values[0]) == "year"
    assert str(f.time_kind_sst_pathfinder.values[0]) == "climatology"
    values = f.compute()
    # February SST of the 1-degree climatology, interpolated: between its neighbours there
    feb = sources[1].data.sst.sel(month=2, lat=slice(43, 45), lon=slice(-11, -9))
    sst = values.sst.values[0, 0]
    assert np.all(sst >= float(feb.min()) - 1e-4)
    assert np.all(sst <= float(feb.max()) + 1e-4)
    assert np.all((values.thetao.values > 11) & (values.thetao.values < 15))
    rows = pd.DataFrame(
        {
            "id": ["argo"],
            "lat": [43.904],
            "lon": [-9.796],
            "layer": ["0-100m"],
            "time": pd.to_datetime(["2022-02-07 05:22"], utc=True),
        }
    )
    m = match_predictors(rows, f, config=PredictorConfig(derived=())).matchup
    assert m[["env_source_ibi", "env_source_sst_pathfinder"]].iloc[0].tolist() == [
        "year",
        "climatology",
    ]


def _field(lat, lon, seed=0):
    rng = np.random.default_rng(seed)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    values = (
        10 + np.sin(np.deg2rad(la) * 3) + np.cos(np.deg2rad(lo) * 2) + rng.normal(0, 0.1, la.shape)
    )
    return values


def test_conservative_regridding_from_one_twelfth_keeps_the_ocean_area_mean():
    step = 1 / 12
    lat = 20 + step * (np.arange(24 * 12) + 0.5)
    lon = -30 + step * (np.arange(24 * 12) + 0.5)
    values = _field(lat, lon)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    land = (la - 32) ** 2 + (lo + 18) ** 2 < 30  # an island with a ragged 1/12 coast
    values[land] = np.nan
    src = xr.Dataset(
        {"t": (("lat", "lon"), values), "ocean": (("lat", "lon"), (~land).astype("float64"))},
        coords={"lat": lat, "lon": lon},
    ).chunk({"lat": 96, "lon": 96})
    grid = output_grid(GridConfig(resolution=0.25, bounds=(-30, -6, 20, 44)))
    out = regrid(src, grid).compute()

    def area(latc, d):
        return np.sin(np.deg2rad(latc + d / 2)) - np.sin(np.deg2rad(latc - d / 2))

    a_in = area(la, step) * np.ones_like(lo)
    ocean = ~land
    mean_in = (values[ocean] * a_in[ocean]).sum() / a_in[ocean].sum()
    la4, _ = np.meshgrid(grid.lat.values, grid.lon.values, indexing="ij")
    w_out = area(la4, 0.25) * out.ocean.values  # the ocean fraction of each output cell
    ok = np.isfinite(out.t.values)
    mean_out = (out.t.values[ok] * w_out[ok]).sum() / w_out[ok].sum()
    assert mean_out == pytest.approx(mean_in, rel=1e-6)
    # a coastal output cell is the mean of its ocean sub-cells only (finite, not NaN)
    frac = out.ocean.values
    coast = (frac > 1e-6) & (frac < 1 - 1e-6)
    assert coast.sum() > 10
    assert np.isfinite(out.t.values[coast]).all()
    assert np.isnan(out.t.values[frac < 1e-6]).all()


def test_linear_regridding_from_one_degree_reproduces_the_values_at_its_cell_centres():
    lat = np.arange(10.5, 30.0, 1.0)
    lon = np.arange(-19.5, 0.0, 1.0)
    src = xr.Dataset(
        {"t": (("lat", "lon"), _field(lat, lon, seed=3))}, coords={"lat": lat, "lon": lon}
    )
    grid = output_grid(GridConfig(resolution=0.25, bounds=(-19.625, -0.375, 10.375, 29.625)))
    out = regrid(src, grid)
    inner = src.t.isel(lat=slice(1, -1), lon=slice(1, -1))
    at_centres = out.t.sel(lat=inner.lat, lon=inner.lon)
    np.testing.assert_allclose(at_centres.values, inner.values, rtol=0, atol=1e-12)


def _task_count(ny, chunk):
    step = 24 / ny
    lat = 20 + step * (np.arange(ny) + 0.5)
    lon = -30 + step * (np.arange(ny) + 0.5)
    src = xr.Dataset(
        {"t": (("time", "lat", "lon"), np.zeros((2, ny, ny), "float32"))},
        coords={"time": [0, 1], "lat": lat, "lon": lon},
    ).chunk({"time": 1, "lat": chunk, "lon": chunk})
    out = regrid(src, output_grid(GridConfig(resolution=1.0, bounds=(-30, -6, 20, 44))))
    return len(dask.base.collections_to_expr([out.t.data]).__dask_graph__())


def test_the_regridding_graph_grows_with_chunks_not_with_cells():
    assert _task_count(96, 48) == _task_count(384, 192)  # 16x the cells, same chunks
    assert _task_count(96, 24) > _task_count(96, 48)


def _two_sources():
    t = pd.to_datetime(["2020-01-01", "2020-02-01"])
    lat, lon = np.arange(4) + 0.5, np.arange(4) + 0.5
    phy = xr.Dataset(
        {"thetao": (("time", "depth", "lat", "lon"), np.ones((2, 2, 4, 4)))},
        coords={"time": t, "depth": [5.0, 50.0], "lat": lat, "lon": lon},
    )
    bgc = xr.Dataset(
        {
            "chl": (("time", "lat", "lon"), np.ones((2, 2, 2))),
            "thetao": (("time", "lat", "lon"), np.ones((2, 2, 2))),
        },
        coords={"time": t, "lat": [1.0, 3.0], "lon": [1.0, 3.0]},
    )
    return phy, bgc


def test_bad_environment_configurations_get_one_clear_error_each(caplog):
    phy, bgc = _two_sources()
    layers = [Layer(0, 100)]
    cfg = PredictorConfig(derived=())
    grid = GridConfig(resolution=2.0, bounds=(0, 4, 0, 4))
    srcs = [
        open_source(phy, EnvironmentSource(entry="phy")),
        open_source(bgc, EnvironmentSource(entry="bgc")),
    ]
    with pytest.raises(ConfigError, match=r"'thetao' is given by two sources \('phy' and 'bgc'\)"):
        build_features(srcs, layers, grid=grid, config=cfg)
    with pytest.raises(ConfigError, match=r"not in the source; available: chl, thetao"):
        open_source(bgc, EnvironmentSource(entry="bgc", variables=["no3"]))
    bgc_chl = open_source(bgc, EnvironmentSource(entry="bgc", variables=["chl"]))
    wide = GridConfig(resolution=2.0, bounds=(0, 8, 0, 4))
    with pytest.raises(
        ConfigError, match=r"phy: the source does not cover the output grid: lon 4..8 E missing"
    ):
        build_features([srcs[0], bgc_chl], layers, grid=wide, config=cfg)
    junk = bgc.isel(time=[0, 1]).assign_coords(time=[3.7, 99.0])
    with pytest.raises(ConfigError, match="climatology months cannot be decoded"):
        open_source(junk, EnvironmentSource(entry="junk", time="climatology"))
    fine = GridConfig(resolution=0.5, bounds=(0, 4, 0, 4))
    with caplog.at_level(logging.WARNING, logger="pipeline.predictors.environment"):
        f = build_features([srcs[0], bgc_chl], layers, grid=fine, config=cfg)
    assert f.sizes["lat"] == 8
    assert "finer than every source" in caplog.text


def test_a_surface_only_variable_is_missing_below_the_surface_layer_but_drops_nothing():
    phy, _ = _two_sources()
    t = pd.to_datetime(["2020-01-01", "2020-02-01"])
    colour = xr.Dataset(
        {"CHL": (("time", "lat", "lon"), np.full((2, 8, 8), 0.3))},
        coords={"time": t, "lat": np.arange(8) / 2 + 0.25, "lon": np.arange(8) / 2 + 0.25},
    )
    srcs = [
        open_source(phy, EnvironmentSource(entry="phy")),
        open_source(
            colour,
            EnvironmentSource(
                entry="oc", depth="surface", surface={"chl": "surface"}, variables={"CHL": "chl"}
            ),
        ),
    ]
    layers = [Layer(0, 20), Layer(20, 100)]
    cfg = PredictorConfig(derived=())
    f = build_features(srcs, layers, grid=GridConfig(like="phy"), config=cfg)
    chl = f.chl.values
    np.testing.assert_allclose(chl[:, 0], 0.3, rtol=1e-6)  # 4 fine cells per output cell
    assert np.isnan(chl[:, 1]).all()
    assert f.chl.attrs["surface_only"] == 1
    from pipeline.predictors import ocean_mask

    assert bool(ocean_mask(f).values.all())  # the missing deep chl limits no cell
    rows = pd.DataFrame(
        {
            "id": ["a", "b"],
            "lat": [1.5, 1.5],
            "lon": [2.5, 2.5],
            "layer": ["0-20m", "20-100m"],
            "time": pd.to_datetime(["2020-01-10", "2020-01-10"], utc=True),
        }
    )
    result = match_predictors(rows, f, config=cfg)
    assert len(result.matchup) == 2
    assert result.matchup["chl"].iloc[0] == pytest.approx(0.3)
    assert np.isnan(result.matchup["chl"].iloc[1])


def test_a_coarse_source_reaches_the_coast_and_the_edges_of_the_output_grid():
    lat = np.arange(-79.0, 90.0, 2.0)  # 2-degree centres -79..89: the output reaches 90 N
    lon = np.arange(-179.0, 180.0, 2.0)
    values = np.ones((lat.size, lon.size))
    values[:, 10:14] = np.nan  # a coarse "continent" four cells wide
    src = xr.Dataset({"t": (("lat", "lon"), values)}, coords={"lat": lat, "lon": lon})
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no 0/0 on land in the workers' logs
        t = regrid(src.chunk({"lat": 20}), output_grid(GridConfig(resolution=1.0))).t.values
    assert np.isfinite(t[-1]).sum() > 300  # the northern edge row
    # one source cell of sea over land each side: only the two middle land columns stay NaN
    cols = np.isnan(t).all(axis=0)
    assert 2 <= cols.sum() <= 5
    np.testing.assert_allclose(t[np.isfinite(t)], 1.0)


def test_the_ocean_mask_of_a_coarser_mask_source_is_its_own_not_the_sea_over_land():
    lat, lon = np.arange(-79.0, 90.0, 2.0), np.arange(-179.0, 180.0, 2.0)
    values = np.ones((12, lat.size, lon.size))
    values[:, :, 10:14] = np.nan  # land, 8 degrees wide
    clim = xr.Dataset(
        {"t": (("month", "lat", "lon"), values)},
        coords={"month": np.arange(1, 13), "lat": lat, "lon": lon},
    )
    src = open_source(clim, EnvironmentSource(entry="c", time="climatology", depth="surface"))
    f = build_features(
        [src],
        [Layer(0, 100)],
        grid=GridConfig(resolution=1.0),
        config=PredictorConfig(derived=()),
        time=("2020-01-01", "2020-01-31"),
    )
    from pipeline.predictors import ocean_mask

    land_cols = ~ocean_mask(f).values[0].any(axis=0)
    assert land_cols.sum() == 8  # the source's 8 land degrees, not 4 (land shrunk by 2 x 2)
