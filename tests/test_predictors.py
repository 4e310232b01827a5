"""Feature fields per layer (pipeline.predictors.features) and their matchup to the targets."""

from __future__ import annotations

import itertools
import math

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from dask.callbacks import Callback
from hypothesis import given
from hypothesis import strategies as st

import pipeline.predictors
import pipeline.predictors.features
import pipeline.predictors.matchup
from pipeline.demo import generate_demo_world
from pipeline.errors import ConfigError
from pipeline.geo import EARTH_RADIUS_KM
from pipeline.predictors.features import PredictorConfig, feature_names, layer_features, ocean_mask
from pipeline.predictors.matchup import match_predictors
from pipeline.sources.copernicus import open_environment
from pipeline.targets.particles import DEFAULT_LAYERS, Layer

R_M = EARTH_RADIUS_KM * 1e3
NO_DERIVED = PredictorConfig(derived=())


# ------------------------------------------------------------------ helpers


def tiny_env(
    *,
    lat=(0.0, 1.0, 2.0),
    lon=(10.0, 11.0, 12.0, 13.0),
    depth=(5.0, 15.0, 30.0, 60.0),
    times=("2020-01-01", "2020-02-01"),
) -> xr.Dataset:
    """Hand-made environment: thetao = level number + 1 (1, 2, 3, 4), uo = vo = 0."""
    nt, nz, ny, nx = len(times), len(depth), len(lat), len(lon)
    levels = np.arange(1.0, nz + 1).reshape(1, nz, 1, 1)
    thetao = np.broadcast_to(levels, (nt, nz, ny, nx)).copy()
    zeros = np.zeros((nt, nz, ny, nx))
    return xr.Dataset(
        {
            "thetao": (("time", "depth", "lat", "lon"), thetao, {"units": "degrees_C"}),
            "uo": (("time", "depth", "lat", "lon"), zeros.copy()),
            "vo": (("time", "depth", "lat", "lon"), zeros.copy()),
            "mlotst": (("time", "lat", "lon"), np.full((nt, ny, nx), 42.0)),
            "deptho": (("lat", "lon"), np.full((ny, nx), 3000.0)),
            "mask": (("depth", "lat", "lon"), np.ones((nz, ny, nx), dtype="int8")),
        },
        coords={
            "time": pd.to_datetime(list(times)),
            "depth": list(depth),
            "lat": list(lat),
            "lon": list(lon),
        },
        attrs={"source": "memory://tiny"},
    )


def current_env(lat: np.ndarray, lon: np.ndarray, u: np.ndarray, v: np.ndarray) -> xr.Dataset:
    """One time step, one level, the given (lat, lon) currents."""
    shape = (1, 1, lat.size, lon.size)
    return xr.Dataset(
        {
            "uo": (("time", "depth", "lat", "lon"), u.reshape(shape)),
            "vo": (("time", "depth", "lat", "lon"), v.reshape(shape)),
        },
        coords={"time": pd.to_datetime(["2020-06-01"]), "depth": [1.0], "lat": lat, "lon": lon},
    )


def vorticity_of(env: xr.Dataset) -> np.ndarray:
    cfg = PredictorConfig(derived=("vorticity",), variables=())
    return layer_features(env, [Layer(0, 10)], config=cfg)["vorticity"].values[0, 0]


def rows(lat, lon, time, layer, ids=None) -> pd.DataFrame:
    lat = np.atleast_1d(np.asarray(lat, dtype=float))
    n = lat.size
    return pd.DataFrame(
        {
            "id": ids if ids is not None else [f"r{i}" for i in range(n)],
            "lat": lat,
            "lon": np.broadcast_to(np.asarray(lon, dtype=float), (n,)),
            "time": pd.to_datetime(np.broadcast_to(np.asarray(time), (n,)), utc=True),
            "layer": np.broadcast_to(np.asarray(layer, dtype=object), (n,)),
            "conc_102_203um_per_l": 1.0,
            "weight": 1.0,
        }
    )


def numpy_layer_mean(profile: np.ndarray, depth: np.ndarray, layer: Layer) -> float:
    """Independent reference: mid-point cell bounds, clipped to the layer, NaN skipped."""
    bounds = [max(0.0, depth[0] - (depth[1] - depth[0]) / 2)]
    bounds += [(a + b) / 2 for a, b in itertools.pairwise(depth)]
    bounds += [depth[-1] + (depth[-1] - depth[-2]) / 2]
    num = den = 0.0
    for k, z in enumerate(depth):
        if layer.top_m <= z < layer.bottom_m and np.isfinite(profile[k]):
            w = min(bounds[k + 1], layer.bottom_m) - max(bounds[k], layer.top_m)
            num += w * profile[k]
            den += w
    return num / den if den else math.nan


def haversine_km(lat1, lon1, lat2, lon2):
    p1, p2 = np.deg2rad(lat1), np.deg2rad(lat2)
    h = (
        np.sin((p2 - p1) / 2) ** 2
        + np.cos(p1) * np.cos(p2) * np.sin(np.deg2rad(np.subtract(lon2, lon1)) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(h))


class TaskCounter(Callback):
    """Size of each graph the local scheduler runs."""

    def __init__(self):
        super().__init__()
        self.sizes: list[int] = []

    def _start(self, dsk):
        self.sizes.append(len(dsk))


# ------------------------------------------------------------------ demo world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_demo_world(
        # the simple world: predictor mechanics, not skill
        str(tmp_path_factory.mktemp("world")),
        resolution=5.0,
        years=(2020, 2021),
        n_profiles=3,
        n_images=1,
        world="simple",
    )


@pytest.fixture(scope="module")
def env(world):
    return open_environment(world.paths["environment"])


@pytest.fixture(scope="module")
def features(env):
    return layer_features(env, DEFAULT_LAYERS)


@pytest.fixture(scope="module")
def persisted(features):
    return features.persist(scheduler="sync")


@pytest.fixture(scope="module")
def valid(persisted):
    return ocean_mask(persisted).values


# ================================================================== layer_features


def test_layer_mean_weights_levels_by_their_thickness_inside_the_layer():
    # levels 5, 15, 30, 60 -> cells 0-10, 10-22.5, 22.5-45, 45-75
    f = layer_features(tiny_env(), [Layer(0, 20), Layer(20, 100)], config=NO_DERIVED)
    values = f["thetao"].values
    assert values[0, 0, 0, 0] == pytest.approx((1 * 10 + 2 * 10) / 20)
    assert values[0, 1, 0, 0] == pytest.approx((3 * 22.5 + 4 * 30) / 52.5, rel=1e-6)


def test_layer_mean_leaves_out_nan_levels_and_is_nan_when_all_are():
    env = tiny_env()
    env["thetao"][:, 3, 0, 0] = np.nan  # 60 m below the sea floor
    env["thetao"][:, 2:, 1, 1] = np.nan  # the whole 20-100 m layer below it
    f = layer_features(env, [Layer(0, 20), Layer(20, 100)], config=NO_DERIVED)
    values = f["thetao"].values
    assert values[0, 1, 0, 0] == pytest.approx(3.0)
    assert np.isnan(values[:, 1, 1, 1]).all()
    assert values[0, 0, 1, 1] == pytest.approx(1.5)


def test_variables_without_depth_and_bathymetry_repeat_over_layers_and_time():
    two = [Layer(0, 20), Layer(20, 100)]
    f = layer_features(tiny_env(), two, config=NO_DERIVED)
    assert feature_names(f) == ["mlotst", "thetao", "uo", "vo", "deptho"]  # no mask
    assert (f["mlotst"].values == 42.0).all()
    assert (f["deptho"].values == 3000.0).all()
    no_bathy = layer_features(tiny_env(), two, config=PredictorConfig(derived=(), bathymetry=False))
    assert "deptho" not in feature_names(no_bathy)


def test_features_follow_the_contract_dims_dtype_coords_chunks_and_attrs():
    env = tiny_env(lat=tuple(float(v) for v in range(6)), depth=(5.0, 150.0, 600.0, 900.0))
    env = env.chunk({"lat": 2, "lon": 2})
    f = layer_features(env, DEFAULT_LAYERS, config=PredictorConfig(variables=("thetao",)))
    assert f.attrs["features"] == [
        "thetao",
        "deptho",
        "speed",
        "vorticity",
        "layer_mid_m",
        "doy_sin",
        "doy_cos",
    ]
    assert f.attrs["source"] == "memory://tiny"
    for name in f.attrs["features"]:
        var = f[name]
        assert var.dims == ("time", "layer", "lat", "lon")
        assert var.dtype == np.float32
        assert var.chunks == ((1, 1), (3,), (2, 2, 2), (4,))
    assert f["layer"].dtype == object
    assert f["layer"].values.tolist() == ["0-100m", "100-500m", "500-1000m"]
    assert f["layer_top_m"].values.tolist() == [0.0, 100.0, 500.0]
    assert f["layer_bottom_m"].values.tolist() == [100.0, 500.0, 1000.0]
    np.testing.assert_array_equal(f["lat"].values, env["lat"].values)


def test_speed_is_the_norm_of_the_layer_mean_currents():
    env = tiny_env()
    env["uo"][:] = 3.0
    env["vo"][:] = np.where(env["depth"] < 20, 4.0, 0.0)[None, :, None, None]
    f = layer_features(env, [Layer(0, 20)], config=PredictorConfig(derived=("speed",)))
    assert np.allclose(f["speed"].values, 5.0)


def test_doy_is_the_month_centred_sin_and_cos_of_each_time_step():
    f = layer_features(tiny_env(), [Layer(0, 20)], config=PredictorConfig(derived=("doy",)))
    for i, month in enumerate((1, 2)):
        angle = 2 * np.pi * (month - 0.5) / 12
        assert np.allclose(f["doy_sin"].values[i], np.sin(angle))
        assert np.allclose(f["doy_cos"].values[i], np.cos(angle))


def test_vorticity_of_a_solid_body_rotation_is_2_u_sin_lat_over_r():
    lat = np.arange(-90.0, 90.1, 2.0)
    lon = np.arange(-180.0, 180.0, 2.0)
    phi = np.deg2rad(lat)[:, None] * np.ones(lon.size)
    u0 = 10.0
    env = current_env(lat, lon, u0 * np.cos(phi), np.zeros_like(phi))
    expected = 2 * u0 * np.sin(phi) / R_M
    zeta = vorticity_of(env)
    np.testing.assert_allclose(zeta[1:-1], expected[1:-1], rtol=1e-3, atol=1e-12)
    np.testing.assert_allclose(zeta[[0, -1]], expected[[0, -1]], rtol=1e-3)  # poles
    chunked = vorticity_of(env.chunk({"lat": 7}))
    np.testing.assert_allclose(chunked, zeta, rtol=1e-6)


def test_vorticity_of_linear_fields_is_exact_including_the_edges_of_a_regional_grid():
    lat = np.arange(10.0, 20.1, 1.0)
    lon = np.arange(-30.0, -19.9, 1.0)
    phi = np.deg2rad(lat)[:, None] * np.ones(lon.size)
    lam = np.ones(lat.size)[:, None] * np.deg2rad(lon)
    c, a = 2.0, 3.0  # v = c lon, u cos(lat) = a lat  ->  (c - a) / (R cos(lat))
    zeta = vorticity_of(current_env(lat, lon, a * phi / np.cos(phi), c * lam))
    np.testing.assert_allclose(zeta, (c - a) / (R_M * np.cos(phi)), rtol=1e-5)


def test_vorticity_is_periodic_in_longitude_on_a_global_grid():
    lat = np.array([-30.0, 0.0, 30.0])
    lon = np.arange(-180.0, 180.0, 10.0)
    lam = np.deg2rad(lon)[None, :] * np.ones((lat.size, 1))
    step = np.deg2rad(10.0)
    zeta = vorticity_of(current_env(lat, lon, np.zeros_like(lam), 5.0 * np.sin(lam)))
    cos = np.cos(np.deg2rad(lat))[:, None]
    expected = 5.0 * np.cos(lam) * np.sin(step) / step / (R_M * cos)
    np.testing.assert_allclose(zeta, expected, rtol=1e-5, atol=1e-20)  # seam columns too


def test_vorticity_beside_land_falls_back_to_one_sided_differences():
    lat = np.arange(0.0, 5.0, 1.0)
    lon = np.arange(0.0, 5.0, 1.0)
    lam = np.ones(lat.size)[:, None] * np.deg2rad(lon)
    v = 2.0 * lam
    v[2, 2] = np.nan  # an island
    u = np.where(np.isnan(v), np.nan, 0.0)
    zeta = vorticity_of(current_env(lat, lon, u, v))
    cos = np.cos(np.deg2rad(lat))[:, None] * np.ones(lon.size)
    expected = np.where(np.isnan(v), np.nan, 2.0 / (R_M * cos))
    np.testing.assert_allclose(zeta, expected, rtol=1e-5)


def test_vorticity_in_a_one_cell_channel_has_no_gradient_across_it_but_a_value():
    lat = np.arange(0.0, 5.0, 1.0)
    lon = np.arange(0.0, 5.0, 1.0)
    lam = np.ones(lat.size)[:, None] * np.deg2rad(lon)
    v = 2.0 * lam
    v[:, [1, 3]] = np.nan  # land both sides of the column lon = 2: a north-south channel
    u = np.where(np.isnan(v), np.nan, 0.0)
    zeta = vorticity_of(current_env(lat, lon, u, v))
    assert np.isfinite(zeta[:, 2]).all()
    np.testing.assert_allclose(zeta[:, 2], 0.0, atol=1e-20)  # dv/dx unresolved, du/dy = 0
    assert np.isnan(zeta[:, [1, 3]]).all()


def test_depth_feature_is_the_mid_depth_of_each_layer():
    f = layer_features(
        tiny_env(), [Layer(0, 20), Layer(20, 60)], config=PredictorConfig(derived=("depth",))
    )
    assert f["layer_mid_m"].dims == ("time", "layer", "lat", "lon")
    assert np.all(f["layer_mid_m"].values[:, 0] == 10.0)
    assert np.all(f["layer_mid_m"].values[:, 1] == 40.0)


def test_demo_features_are_lazy_and_valid_where_the_ocean_is(env, features, valid):
    assert all(features[n].chunks is not None for n in feature_names(features))
    surface_ocean = np.isfinite(env["thetao"].isel(time=0, depth=0).values)
    assert not (valid[0] & ~surface_ocean).any()
    assert valid[0].sum() == surface_ocean.sum()  # every water cell, one-cell channels too
    assert valid[0].sum() >= valid[1].sum() >= valid[2].sum() > 0


# ================================================================== config errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"derived": ("sped",)},
            r"predictors\.derived: \['sped'\] holds unknown \['sped'\]; valid: 'depth', 'doy'",
        ),
        ({"max_distance_km": -1.0}, r"predictors\.max_distance_km: -1\.0; expected .* >= 0"),
        ({"max_distance_km": math.nan}, r"predictors\.max_distance_km: nan"),
        ({"variables": "thetao"}, r"variables: 'thetao' is one string; .*=\['thetao'\]"),
    ],
    ids=["unknown-derived", "negative-radius", "nan-radius", "string-variables"],
)
def test_predictor_config_rejects_bad_options_naming_the_key(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PredictorConfig(**kwargs)


@pytest.mark.parametrize(
    ("config", "layers", "match"),
    [
        (
            PredictorConfig(variables=("thetao", "nope")),
            DEFAULT_LAYERS,
            r"memory://tiny: variable\(s\) 'nope' not in the store; available: deptho, mask, ml",
        ),
        (
            PredictorConfig(variables=("thetao",), derived=("speed",)),
            DEFAULT_LAYERS,
            r"'uo', 'vo' \(needed by speed\) not in the store.*drop speed/vorticity",
        ),
        (NO_DERIVED, [Layer(2000, 3000)], r"layer '2000-3000m' holds no depth level"),
        (NO_DERIVED, [], r"no layers given"),
    ],
    ids=["missing-variable", "speed-without-currents", "layer-below-store", "no-layers"],
)
def test_layer_features_errors_name_the_variable_and_the_fix(config, layers, match):
    env = tiny_env(depth=(5.0, 150.0, 600.0, 1000.0))
    if "uo" in match:
        env = env.drop_vars(["uo", "vo"])
    with pytest.raises(ConfigError, match=match):
        layer_features(env, layers, config=config)


def test_match_predictors_rejects_a_layer_not_in_the_features():
    f = layer_features(tiny_env(), [Layer(0, 20)], config=NO_DERIVED)
    with pytest.raises(ConfigError, match=r"layer\(s\) '0-100m' not in the features.*0-20m"):
        match_predictors(rows(1.0, 11.0, "2020-01-10", "0-100m"), f)


def test_the_predictors_stage_exports_the_features_and_the_matchup():
    for module in (pipeline.predictors.features, pipeline.predictors.matchup):
        for name in module.__all__:
            assert getattr(pipeline.predictors, name) is getattr(module, name)
            assert name in pipeline.predictors.__all__


# ================================================================== matchup


def test_matchup_on_the_own_cell_keeps_the_rows_and_adds_the_contract_columns():
    f = layer_features(tiny_env(), [Layer(0, 20)], config=PredictorConfig(derived=("doy",)))
    targets = rows([0.2, 1.6], [10.4, 12.7], "2020-02-29T23:00", "0-20m", ids=["a", "b"])
    targets.index = [7, 9]
    result = match_predictors(targets, f)
    m = result.matchup
    assert result.missing.empty
    assert list(m.index) == [7, 9]
    assert list(m.columns) == [
        *targets.columns,
        "env_time",
        "env_source",
        "cell_lat",
        "cell_lon",
        "distance_km",
        "mlotst",
        "thetao",
        "uo",
        "vo",
        "deptho",
        "doy_sin",
        "doy_cos",
    ]
    assert m["cell_lat"].tolist() == [0.0, 2.0]
    assert m["cell_lon"].tolist() == [10.0, 13.0]
    assert m["distance_km"].tolist() == [0.0, 0.0]
    assert (m["env_source"] == "year").all()
    assert (m["env_time"] == pd.Timestamp("2020-02-01", tz="UTC")).all()
    assert m["thetao"].tolist() == [1.5, 1.5]
    assert all(m[c].dtype == np.float64 for c in feature_names(f))


def test_matched_thetao_equals_the_numpy_layer_mean_of_the_cell_and_month(env, persisted, valid):
    depth = env["depth"].values.astype(float)
    lat, lon = env["lat"].values, env["lon"].values
    rng = np.random.default_rng(1)
    picks = []
    for li, layer in enumerate(DEFAULT_LAYERS):
        ys, xs = np.nonzero(valid[li])
        for k in rng.choice(ys.size, 4, replace=False):
            picks.append((layer, ys[k], xs[k], int(rng.integers(0, env.sizes["time"]))))
    times = pd.DatetimeIndex(env["time"].values)
    targets = pd.concat(
        [
            rows(lat[y] + 0.3, lon[x] - 0.4, times[t] + pd.Timedelta(days=12), layer.name)
            for layer, y, x, t in picks
        ],
        ignore_index=True,
    )
    targets["id"] = [f"p{i}" for i in range(len(targets))]
    m = match_predictors(targets, persisted).matchup
    assert len(m) == len(picks)
    thetao = env["thetao"].values
    for (layer, y, x, t), got, source in zip(picks, m["thetao"], m["env_source"], strict=True):
        assert source == "year"
        expected = numpy_layer_mean(thetao[t, :, y, x].astype(float), depth, layer)
        assert got == pytest.approx(expected, rel=1e-5)


def test_a_row_of_a_year_not_in_the_store_gets_the_monthly_climatology(env, persisted, valid):
    y, x = (int(i[0]) for i in np.nonzero(valid[1]))
    lat, lon = float(env["lat"][y]), float(env["lon"][x])
    m = match_predictors(rows(lat, lon, "2018-03-15", "100-500m"), persisted).matchup
    assert m["env_source"].tolist() == ["climatology"]
    assert m["env_time"].isna().all()
    march = pd.DatetimeIndex(env["time"].values).month == 3
    profiles = env["thetao"].values[march][:, :, y, x].astype(float)
    depth = env["depth"].values.astype(float)
    expected = np.mean([numpy_layer_mean(p, depth, DEFAULT_LAYERS[1]) for p in profiles])
    assert m["thetao"].iloc[0] == pytest.approx(expected, rel=1e-5)


def test_a_row_whose_month_is_in_no_year_of_the_store_is_missing_with_the_reason():
    f = layer_features(tiny_env(), [Layer(0, 20)], config=NO_DERIVED)
    result = match_predictors(rows([1.0, 1.0], 11.0, ["2020-07-02", "2021-01-02"], "0-20m"), f)
    assert result.matchup["env_source"].tolist() == ["climatology"]
    assert result.missing["reason"].tolist() == [
        "month 2020-07 not in the store (no time step of that month in any year; "
        "months present: 1, 2)"
    ]
    assert list(result.missing.columns) == ["id", "layer", "lat", "lon", "time", "reason"]


def test_a_point_on_land_moves_to_the_nearest_valid_cell_within_the_radius(env, persisted, valid):
    lat, lon = env["lat"].values.astype(float), env["lon"].values.astype(float)
    land = ~np.isfinite(env["thetao"].isel(time=0, depth=0).values)
    # a land cell south of an ocean cell, away from the poles: point 2.4 deg towards the sea
    y, x = next(
        (y, x)
        for y, x in zip(*np.nonzero(land), strict=True)
        if 10 < y < lat.size - 5 and valid[0, y + 1, x] and abs(lat[y]) < 50
    )
    point = (lat[y] + 2.4, lon[x])
    config = PredictorConfig(max_distance_km=400.0)
    result = match_predictors(rows(*point, "2020-05-20", "0-100m"), persisted, config=config)
    assert result.missing.empty
    m = result.matchup.iloc[0]
    assert 0 < m["distance_km"] <= 400
    assert m["distance_km"] == pytest.approx(
        haversine_km(*point, m["cell_lat"], m["cell_lon"]), rel=1e-9
    )
    vy, vx = np.nonzero(valid[0])
    nearest = haversine_km(*point, lat[vy], lon[vx]).min()
    assert m["distance_km"] == pytest.approx(nearest, rel=1e-9)
    assert np.isfinite(m["thetao"])


def test_a_far_inland_point_is_missing_with_the_reason(persisted):
    result = match_predictors(rows(55.0, 90.0, "2020-05-20", "0-100m"), persisted)
    assert result.matchup.empty
    assert result.missing["reason"].tolist() == [
        "no valid cell within 150 km (land or outside the grid)"
    ]


def test_a_layer_below_a_shallow_sea_floor_is_missing_with_the_reason(env, persisted, valid):
    shallow = valid[0] & ~valid[2]
    ys, xs = np.nonzero(shallow)
    lat, lon = float(env["lat"][ys[0]]), float(env["lon"][xs[0]])
    result = match_predictors(rows(lat, lon, "2020-05-20", "500-1000m"), persisted)
    assert result.missing["reason"].str.startswith("layer below the sea floor").all()
    top = match_predictors(rows(lat, lon, "2020-05-20", "0-100m"), persisted)
    assert top.matchup["distance_km"].tolist() == [0.0]


def test_rows_without_position_or_time_are_reported_not_dropped(persisted):
    targets = rows([np.nan, 10.0, 95.0], -140.0, "2020-01-15", "0-100m")
    targets.loc[1, "time"] = pd.NaT
    result = match_predictors(targets, persisted)
    assert result.missing["reason"].tolist() == [
        "lat/lon missing or out of range",
        "time missing",
        "lat/lon missing or out of range",
    ]


@given(
    st.lists(
        st.tuples(
            st.floats(-90, 90),
            st.floats(-180, 180, exclude_max=True),
            st.datetimes(pd.Timestamp("2018-01-01"), pd.Timestamp("2022-12-31")),
            st.sampled_from([layer.name for layer in DEFAULT_LAYERS]),
        ),
        max_size=40,
    )
)
def test_matched_and_missing_rows_partition_the_targets(persisted, points):
    targets = pd.DataFrame(points, columns=["lat", "lon", "time", "layer"])
    targets["time"] = pd.to_datetime(targets["time"]).dt.tz_localize("UTC")
    targets.insert(0, "id", [f"h{i}" for i in range(len(targets))])
    result = match_predictors(targets, persisted)
    assert len(result.matchup) + len(result.missing) == len(targets)
    assert set(result.matchup["id"]).isdisjoint(result.missing["id"])
    assert set(result.matchup["id"]) | set(result.missing["id"]) == set(targets["id"])
    assert np.isfinite(result.matchup[feature_names(persisted)].to_numpy()).all()
    assert (result.missing["reason"] != "").all()


def test_the_graph_grows_with_chunks_touched_not_with_points(env, features, valid):
    lat, lon = env["lat"].values, env["lon"].values
    ys, xs = np.nonzero(valid[0])
    sizes = {}
    for n in (3, 3000):
        k = np.arange(n) % ys.size
        targets = rows(lat[ys[k]], lon[xs[k]], "2020-04-10", "0-100m")
        with dask.config.set(scheduler="sync"), TaskCounter() as counter:
            result = match_predictors(targets, features)
        assert len(result.matchup) == n
        sizes[n] = counter.sizes
    assert sizes[3] == sizes[3000]  # mask, then one block: same graphs whatever the points
    k = np.arange(60) % ys.size
    spread = rows(
        lat[ys[k]], lon[xs[k]], pd.date_range("2020-01-10", periods=60, freq="7D"), "0-100m"
    )
    with dask.config.set(scheduler="sync"), TaskCounter() as counter:
        match_predictors(spread, features)
    touched = spread["time"].dt.strftime("%Y-%m").nunique()
    assert counter.sizes[-1] > sizes[3][-1]
    assert counter.sizes[-1] <= touched * sizes[3][-1]


def test_matchup_reads_features_from_s3_on_a_distributed_cluster(world, env, persisted, valid, s3):
    import fsspec
    from distributed import Client, LocalCluster

    url = s3.url("env/environment.zarr")
    fs = fsspec.filesystem("s3", **s3.storage_options)
    fs.put(world.paths["environment"], url.removeprefix("s3://"), recursive=True)
    remote = layer_features(
        open_environment(url, storage_options=s3.storage_options), DEFAULT_LAYERS
    )
    lat, lon = env["lat"].values, env["lon"].values
    ys, xs = np.nonzero(valid[1])
    k = np.arange(50) * 7 % ys.size
    targets = rows(lat[ys[k]], lon[xs[k]], ["2020-02-03", "2021-09-09"] * 25, "100-500m")
    targets.loc[0, "time"] = pd.Timestamp("2017-06-01", tz="UTC")  # climatology
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster),
    ):
        result = match_predictors(targets, remote)
    local = match_predictors(targets, persisted)
    assert remote.attrs["source"] == url
    assert len(result.matchup) == 50
    assert result.matchup["env_source"].iloc[0] == "climatology"
    pd.testing.assert_frame_equal(result.matchup, local.matchup)
