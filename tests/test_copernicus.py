from __future__ import annotations

import logging
import pickle

import boto3
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

from pipeline.errors import ConfigError, InputFormatError
from pipeline.sources.copernicus import describe_environment, open_environment

TIMES = pd.to_datetime(["2020-01-16", "2020-02-15", "2020-03-16"])
DEPTHS = np.array([1.0, 10.0, 30.0, 100.0])  # positive down
LATS = np.arange(-60.0, 61.0, 10.0)  # 13
LONS_180 = np.arange(-180.0, 180.0, 5.0)  # 72
LONS_360 = np.arange(0.0, 360.0, 5.0)  # 72, seam (180 E) at index 36
LAND = {"lat": 20.0, "lon": -40.0}  # one land column, NaN at every depth


def wrap(lon):
    return (np.asarray(lon, dtype="float64") + 180.0) % 360.0 - 180.0


def truth(time_index, depth, lat, lon):
    """The analytic field: every term tells a coordinate apart (lon in -180..180)."""
    return time_index * 20.0 + depth / 10.0 + np.cos(np.radians(lat)) + wrap(lon) / 100.0


def expected(ds: xr.Dataset) -> np.ndarray:
    t = np.arange(ds.sizes["time"])[:, None, None, None]
    d = ds.depth.values[None, :, None, None]
    la = ds.lat.values[None, None, :, None]
    lo = ds.lon.values[None, None, None, :]
    land = (la == LAND["lat"]) & (lo == LAND["lon"])
    return np.where(land, np.nan, truth(t, d, la, lo))


def arco_like(lon_chunk: int = 18) -> xr.Dataset:
    """Like a real ARCO store: elevation (deepest first), latitude N->S, longitude 0..360."""
    elevation = -DEPTHS[::-1]
    latitude = LATS[::-1]
    t = np.arange(TIMES.size)[:, None, None, None]
    e = elevation[None, :, None, None]
    la = latitude[None, None, :, None]
    lo = LONS_360[None, None, None, :]
    field = truth(t, -e, la, lo).astype("float32")
    field = np.where((la == LAND["lat"]) & (wrap(lo) == LAND["lon"]), np.nan, field)
    ms = (TIMES - pd.Timestamp("1970-01-01")) // pd.Timedelta("1ms")
    ds = xr.Dataset(
        {
            "thetao": (("time", "elevation", "latitude", "longitude"), field),
            "mlotst": (("time", "latitude", "longitude"), field[:, 0] * 0 + 50.0),
            # a static field stored lon-first, to check the transpose
            "deptho": (
                ("longitude", "latitude"),
                np.broadcast_to(wrap(LONS_360)[:, None], (72, 13)),
            ),
        },
        coords={
            "time": (
                "time",
                ms.to_numpy().astype("float64"),
                {"units": "milliseconds since 1970-01-01 00:00:00", "calendar": "gregorian"},
            ),
            "elevation": ("elevation", elevation, {"units": "m", "positive": "up"}),
            "latitude": ("latitude", latitude, {"units": "degrees_north"}),
            "longitude": ("longitude", LONS_360, {"units": "degrees_east"}),
        },
    )
    ds["deptho"] = ds["deptho"].astype("float32")
    for name in ("thetao", "mlotst", "deptho"):
        ds[name].encoding = {"_FillValue": np.float32(-32767.0)}
    chunks = {"time": 1, "elevation": 1, "latitude": 5, "longitude": lon_chunk}
    return ds.chunk(chunks)


def toolbox_like() -> xr.Dataset:
    """Like copernicusmarine.open_dataset output saved as zarr v3: depth, -180..180."""
    t = np.arange(TIMES.size)[:, None, None, None]
    d = DEPTHS[None, :, None, None]
    la = LATS[None, None, :, None]
    lo = LONS_180[None, None, None, :]
    field = truth(t, d, la, lo).astype("float32")
    field = np.where((la == LAND["lat"]) & (lo == LAND["lon"]), np.nan, field)
    ds = xr.Dataset(
        {"thetao": (("time", "depth", "latitude", "longitude"), field)},
        coords={"time": TIMES, "depth": DEPTHS, "latitude": LATS, "longitude": LONS_180},
    )
    return ds.chunk({"time": 1, "depth": 2, "latitude": 13, "longitude": 36})


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("copernicus")
    paths = {
        "arco": str(root / "arco.zarr"),
        "arco_unaligned": str(root / "arco_unaligned.zarr"),
        "toolbox": str(root / "toolbox.zarr"),
    }
    arco_like().to_zarr(paths["arco"], zarr_format=2, consolidated=True)
    arco_like(lon_chunk=24).to_zarr(paths["arco_unaligned"], zarr_format=2, consolidated=True)
    toolbox_like().to_zarr(paths["toolbox"], zarr_format=3, consolidated=False)
    return paths


def store_nchunks(path: str, name: str) -> int:
    return zarr.open_group(path, mode="r")[name].nchunks


@pytest.mark.parametrize("layout", ["arco", "toolbox"])
def test_open_environment_puts_every_value_at_its_lat_lon_depth_time(stores, layout):
    ds = open_environment(stores[layout])
    assert ds.thetao.dims == ("time", "depth", "lat", "lon")
    np.testing.assert_array_equal(ds.depth.values, DEPTHS)
    np.testing.assert_array_equal(ds.lat.values, LATS)
    np.testing.assert_array_equal(ds.lon.values, LONS_180)
    np.testing.assert_array_equal(ds.time.values, TIMES.values)
    np.testing.assert_allclose(ds.thetao.values, expected(ds), atol=1e-4)
    assert ds.thetao.dtype == np.float32
    assert ds.attrs["source"] == stores[layout]


def test_open_environment_reads_land_fill_values_as_nan(stores):
    ds = open_environment(stores["arco"])
    column = ds.thetao.sel(**LAND)
    assert bool(column.isnull().all())
    assert int(ds.thetao.isnull().sum()) == TIMES.size * DEPTHS.size


def test_open_environment_converts_elevation_to_depth_positive_down(stores):
    ds = open_environment(stores["arco"])
    assert "elevation" not in ds.variables
    assert ds.depth.attrs["positive"] == "down"
    assert ds.depth.attrs["units"] == "m"
    # the shallowest level is first and holds depth / 10 = 0.1 of the analytic field
    surface = ds.thetao.isel(time=0, depth=0).sel(lat=0.0, lon=0.0)
    assert float(surface) == pytest.approx(1.0 / 10.0 + 1.0, abs=1e-5)


def test_open_environment_orders_partial_dims_and_transposes_lon_first_variables(stores):
    ds = open_environment(stores["arco"])
    assert ds.mlotst.dims == ("time", "lat", "lon")
    assert ds.deptho.dims == ("lat", "lon")
    # deptho was written as the (wrapped) longitude of each column
    np.testing.assert_array_equal(ds.deptho.values[0], LONS_180)


@pytest.mark.parametrize("layout", ["arco", "toolbox"])
def test_open_environment_keeps_the_store_chunks(stores, layout):
    ds = open_environment(stores[layout])
    n = store_nchunks(stores[layout], "thetao")
    assert ds.thetao.data.npartitions == n
    # reversing and rolling add a constant number of layers, not tasks per point
    assert len(ds.thetao.data.__dask_graph__()) <= 6 * n


def test_open_environment_keeps_chunk_sizes_when_the_seam_is_inside_a_chunk(stores, caplog):
    with caplog.at_level(logging.INFO, logger="pipeline.sources.copernicus"):
        ds = open_environment(stores["arco_unaligned"])
    assert ds.thetao.chunks[-1] == (24, 24, 24)
    assert ds.thetao.data.npartitions == store_nchunks(stores["arco_unaligned"], "thetao")
    np.testing.assert_allclose(ds.thetao.values, expected(ds), atol=1e-4)
    assert "rolled by -36" in caplog.text
    assert "seam inside a chunk of [24]" in caplog.text


def test_open_environment_decodes_ms_since_1970_time(stores):
    raw = xr.open_zarr(stores["arco"], decode_times=False)
    assert raw.time.attrs["units"].startswith("milliseconds since 1970")
    ds = open_environment(stores["arco"])
    assert ds.time.dtype.kind == "M"
    assert pd.Timestamp(ds.time.values[1]) == pd.Timestamp("2020-02-15")


def test_open_environment_keeps_only_the_requested_variables(stores):
    ds = open_environment(stores["arco"], variables=["mlotst"])
    assert list(ds.data_vars) == ["mlotst"]
    assert set(ds.coords) == {"time", "lat", "lon"}
    ds = open_environment(stores["arco"], variables="thetao")
    assert list(ds.data_vars) == ["thetao"]


@pytest.mark.parametrize(
    ("time", "steps"),
    [
        (("2020-02-01", "2020-03-31"), 2),
        (slice("2020-01-01", "2020-01-31"), 1),
        ((None, "2020-02-20"), 2),
    ],
    ids=["pair", "slice", "open-start"],
)
def test_open_environment_selects_an_inclusive_time_range(stores, time, steps):
    ds = open_environment(stores["toolbox"], time=time)
    assert ds.sizes["time"] == steps


def test_open_environment_names_the_missing_variable_and_the_available_ones(stores):
    with pytest.raises(
        ConfigError,
        match=r"arco\.zarr: variable\(s\) 'no3' not in the store; "
        r"available: deptho, mlotst, thetao",
    ):
        open_environment(stores["arco"], variables=["thetao", "no3"])


def test_open_environment_gives_the_store_extent_when_the_time_range_selects_nothing(stores):
    with pytest.raises(
        ConfigError,
        match=r"toolbox\.zarr: time range 2030-01-01 \.\. "
        r"2030-12-31 selects no time step; the store covers "
        r"2020-01-16T00:00:00 \.\. 2020-03-16T00:00:00 \(3 steps\)",
    ):
        open_environment(stores["toolbox"], time=("2030-01-01", "2030-12-31"))


@pytest.mark.parametrize(
    ("time", "match"),
    [
        (("2020-01-01",), r"not a \(start, end\) pair"),
        ("2020-01-01", r"not a \(start, end\) pair"),
        (("2020-13-45", "2020-02-01"), r"not a pair of dates"),
    ],
    ids=["one-date", "string", "not-a-date"],
)
def test_open_environment_rejects_malformed_time_ranges(stores, time, match):
    with pytest.raises(ConfigError, match=match):
        open_environment(stores["toolbox"], time=time)


def test_open_environment_reports_a_missing_store(tmp_path):
    url = str(tmp_path / "nothing.zarr")
    with pytest.raises(InputFormatError, match=r"nothing\.zarr: no zarr store found there"):
        open_environment(url)


def test_open_environment_rechunks_only_on_request_and_checks_dimension_names(stores):
    ds = open_environment(stores["arco"], chunks={"lat": 13, "lon": 72})
    assert ds.thetao.chunks[2:] == ((13,), (72,))
    with pytest.raises(ConfigError, match=r"unknown dimension\(s\) 'latitude'; valid: time"):
        open_environment(stores["arco"], chunks={"latitude": 13})


def test_opened_environment_survives_a_pickle_round_trip(stores):
    ds = open_environment(stores["arco"], variables=["thetao"])
    back = pickle.loads(pickle.dumps(ds))
    xr.testing.assert_identical(back.compute(), ds.compute())


def test_describe_environment_reports_extents_resolution_levels_and_chunks(stores):
    info = describe_environment(open_environment(stores["arco"]))
    assert info["variables"] == ["deptho", "mlotst", "thetao"]
    assert info["time"] == {
        "start": "2020-01-16T00:00:00",
        "end": "2020-03-16T00:00:00",
        "steps": 3,
    }
    assert info["lat"] == {"min": -60.0, "max": 60.0, "step": 10.0, "n": 13}
    assert info["lon"] == {"min": -180.0, "max": 175.0, "step": 5.0, "n": 72}
    assert info["depth"] == DEPTHS.tolist()
    assert info["chunks"] == {"time": 1, "depth": 1, "lat": 5, "lon": 18}
    assert info["n_chunks"] == 3 * 4 * 3 * 4 + 3 * 3 * 4 + 3 * 4
    assert info["source"].endswith("arco.zarr")


def test_describe_environment_handles_a_dataset_without_time_or_depth():
    ds = xr.Dataset(
        {"x": (("lat", "lon"), np.zeros((2, 2)))}, coords={"lat": [0, 1], "lon": [0, 1]}
    )
    info = describe_environment(ds)
    assert info["time"] is None
    assert info["depth"] is None
    assert info["n_chunks"] == 0


@pytest.mark.parametrize("anon", [False, True], ids=["signed", "anonymous"])
def test_open_environment_reads_an_arco_store_over_s3(s3, stores, anon):
    _, storage_options = s3
    url = s3.url("arco/timeChunked.zarr")
    # like the public ARCO buckets: objects readable without credentials
    writer = {**storage_options, "s3_additional_kwargs": {"ACL": "public-read"}}
    arco_like().to_zarr(url, zarr_format=2, consolidated=True, storage_options=writer)
    boto3.client("s3", endpoint_url=s3.endpoint_url).put_bucket_acl(
        Bucket=s3.bucket, ACL="public-read"
    )
    options = {**storage_options, "anon": anon}
    ds = open_environment(url, storage_options=options, variables=["thetao"])
    assert ds.attrs["source"] == url
    assert ds.thetao.data.npartitions == 3 * 4 * 3 * 4
    np.testing.assert_allclose(ds.thetao.values, expected(ds), atol=1e-4)
    local = open_environment(stores["arco"], variables=["thetao"])
    xr.testing.assert_equal(ds.thetao.compute(), local.thetao.compute())


def test_open_environment_reports_a_missing_s3_store_naming_the_url(s3):
    url = s3.url("nothing/here.zarr")
    with pytest.raises(InputFormatError, match=r"s3://oceanfields-test/nothing/here\.zarr: "):
        open_environment(url, storage_options=s3.storage_options)


def test_open_environment_retries_as_zarr_v2_then_names_the_url_when_access_is_denied(
    s3,
    caplog,
):
    url = s3.url("private/timeChunked.zarr")
    arco_like().to_zarr(url, zarr_format=2, consolidated=True, storage_options=s3.storage_options)
    anonymous = {**s3.storage_options, "anon": True}  # the bucket is private
    with (
        caplog.at_level(logging.INFO, logger="pipeline.sources.copernicus"),
        pytest.raises(
            InputFormatError,
            match=r"s3://oceanfields-test/private/timeChunked\.zarr: cannot open as a zarr "
            r"store \(PermissionError: .*; as zarr v2: PermissionError",
        ),
    ):
        open_environment(url, storage_options=anonymous)
    assert "trying again as a zarr v2 store" in caplog.text
