"""Fields: model predictions on every cell, intervals, envelope flags, resumable zarr writes."""

from __future__ import annotations

import importlib
import json
import pickle
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import xgboost as xgb
import zarr

from pipeline.errors import ConfigError, StoreMismatchError
from pipeline.fields import WriteReport
from pipeline.fields import predict as fields_module
from pipeline.fields.predict import DIMS, FieldsConfig, envelope_of, predict_fields
from pipeline.fields.write import write_fields
from pipeline.products.cf import cf_fields

NAMES = ["temp_c", "chl_log", "depth_mid_m", "coslat"]
TARGETS = ["conc_102_203um_per_l", "flux_mgc_m2_d"]
EPS = 1e-3
TRANSFORM = {"name": "log10", "epsilon": EPS}
QUANTILES = {"conc_102_203um_per_l": (-0.3, 0.2), "flux_mgc_m2_d": (-0.5, 0.4)}
PROVENANCE = {"config_sha256": "abc123", "model_id": "m-1", "software_version": "0.1.0"}
LAND = (slice(6, 10), slice(10, 16))  # lat, lon indices of a continent
SHELF = (slice(0, 3), slice(0, 36))  # deep layer below the sea floor on these rows
HOLE = (1, 1, 12, 30)  # one cell (time, layer, lat, lon) where only chl_log is missing


def _features() -> xr.Dataset:
    nt, nl, ny, nx = 3, 3, 18, 36
    time = pd.date_range("2020-01-01", periods=nt, freq="MS")
    lat = np.linspace(-85, 85, ny)
    lon = np.linspace(-175, 175, nx)
    layers = np.array(["0-100m", "100-500m", "500-1000m"], dtype=object)
    top, bottom = np.array([0.0, 100.0, 500.0]), np.array([100.0, 500.0, 1000.0])
    t, lay, la, lo = np.meshgrid(np.arange(nt), np.arange(nl), lat, lon, indexing="ij")
    data = {
        "temp_c": 28 * np.cos(np.deg2rad(la)) - 4 * lay + np.sin(t) + np.sin(np.deg2rad(lo)),
        "chl_log": -1 + 0.8 * np.cos(np.deg2rad(2 * la)) * np.cos(np.deg2rad(lo)) - 0.5 * lay,
        "depth_mid_m": ((top + bottom) / 2)[lay],
        "coslat": np.cos(np.deg2rad(la)),
    }
    mask = np.zeros((nt, nl, ny, nx), bool)
    mask[:, :, LAND[0], LAND[1]] = True
    mask[:, 2, SHELF[0], SHELF[1]] = True
    out = {}
    for name, values in data.items():
        values = np.where(mask, np.nan, values).astype("float32")
        if name == "chl_log":
            values[HOLE] = np.nan
        out[name] = (DIMS, values)
    ds = xr.Dataset(
        out,
        coords={
            "time": time,
            "layer": ("layer", layers),
            "layer_top_m": ("layer", top),
            "layer_bottom_m": ("layer", bottom),
            "lat": lat,
            "lon": lon,
        },
        attrs={"features": list(NAMES)},
    )
    return ds.chunk({"time": 1, "layer": -1, "lat": 6, "lon": -1})


def _truth(X: pd.DataFrame) -> np.ndarray:
    """The known target function, in the transformed (log10) space."""
    conc = 0.05 * X["temp_c"] + 0.7 * X["chl_log"] - 0.001 * X["depth_mid_m"]
    flux = 1.0 + 0.5 * X["chl_log"] - 0.0015 * X["depth_mid_m"] + 0.3 * X["coslat"]
    return np.column_stack([conc, flux])


def _table(features: xr.Dataset) -> pd.DataFrame:
    X = pd.DataFrame({n: features[n].values.ravel() for n in NAMES})
    return X.dropna().reset_index(drop=True)


@pytest.fixture(scope="module")
def features() -> xr.Dataset:
    return _features()


@pytest.fixture(scope="module")
def training(features):
    X = _table(features).sample(frac=0.8, random_state=0)
    params = {
        "tree_method": "hist",
        "multi_strategy": "multi_output_tree",
        "max_depth": 4,
        "eta": 0.3,
        "seed": 0,
    }
    booster = xgb.train(params, xgb.DMatrix(X, label=_truth(X)), num_boost_round=25)
    return X, booster


@pytest.fixture(scope="module")
def booster(training):
    return training[1]


@pytest.fixture(scope="module")
def fields_lazy(features, training):
    X, booster = training
    return predict_fields(
        features,
        booster,
        targets=TARGETS,
        transform=TRANSFORM,
        residual_quantiles=QUANTILES,
        envelope=envelope_of(X),
    )


@pytest.fixture(scope="module")
def fields(fields_lazy):
    with dask.config.set(scheduler="threads"):
        return fields_lazy.compute()


def _rows(features: xr.Dataset) -> np.ndarray:
    return np.stack([features[n].values for n in NAMES], axis=-1).reshape(-1, len(NAMES))


def _inverse(y):
    return np.maximum(10.0 ** np.asarray(y, dtype="float64") - EPS, 0.0).astype("float32")


def _count_in_graph(obj, raw: bytes) -> int:
    return pickle.dumps(dict(obj.__dask_graph__()), protocol=5).count(raw[100:400])


# --- prediction ------------------------------------------------------------------------


def test_field_equals_booster_inplace_predict_back_transformed_at_every_valid_cell(
    features, booster, fields
):
    X = _rows(features)
    valid = ~np.isnan(X).any(axis=1)
    expected = _inverse(booster.inplace_predict(X[valid]))
    for i, target in enumerate(TARGETS):
        got = fields[target].values.reshape(-1)[valid]
        np.testing.assert_allclose(got, expected[:, i], rtol=1e-6)
        assert fields[target].dtype == np.float32


def test_fields_are_nan_exactly_where_any_feature_is_nan(features, fields):
    missing = np.isnan(_rows(features)).any(axis=1).reshape(fields[TARGETS[0]].shape)
    assert missing[HOLE]
    assert missing[0, 0, 7, 12]
    assert missing[0, 2, 1, 5]
    assert not missing[0, 0, 1, 5]  # shallow layer over the shelf is ocean
    for name in [*TARGETS, *(f"{t}_{s}" for t in TARGETS for s in ("lower", "upper"))]:
        values = fields[name].values
        assert np.array_equal(np.isnan(values), missing), name
        assert np.isfinite(values[~missing]).all(), name
    assert (fields["extrapolation"].values[missing] == -1).all()
    assert (fields["n_features_outside"].values[missing] == -1).all()


def test_interval_brackets_the_mean_and_equals_prediction_plus_residual_quantile(
    features, booster, fields
):
    X = _rows(features)
    valid = ~np.isnan(X).any(axis=1)
    pred = booster.inplace_predict(X[valid]).astype("float64")
    for i, target in enumerate(TARGETS):
        lo, hi = QUANTILES[target]
        lower = fields[f"{target}_lower"].values.reshape(-1)[valid]
        upper = fields[f"{target}_upper"].values.reshape(-1)[valid]
        mean = fields[target].values.reshape(-1)[valid]
        np.testing.assert_allclose(lower, _inverse(pred[:, i] + lo), rtol=1e-6)
        np.testing.assert_allclose(upper, _inverse(pred[:, i] + hi), rtol=1e-6)
        assert (lower <= mean).all()
        assert (mean <= upper).all()
        assert (lower < upper).all()
        assert fields[f"{target}_upper"].attrs["interval_coverage"] == 0.9


def test_per_layer_quantiles_widen_only_their_layer_whatever_the_chunking(features, booster):
    # Mondrian (per-layer) intervals: the deep layer gets twice the quantiles; blocks that
    # hold one layer or all three give the same bounds.
    wide = {t: (2 * lo, 2 * hi) for t, (lo, hi) in QUANTILES.items()}
    by_layer = {"500-1000m": wide}
    X = _rows(features)
    valid = ~np.isnan(X).any(axis=1)
    pred = booster.inplace_predict(X[valid]).astype("float64")
    layer = np.broadcast_to(np.arange(3)[None, :, None, None], features[NAMES[0]].shape).reshape(
        -1
    )[valid]
    for chunks in ({"time": 1, "layer": 1}, {"time": 1, "layer": 3}):
        out = predict_fields(
            features.chunk(chunks),
            booster,
            targets=TARGETS,
            transform=TRANSFORM,
            residual_quantiles=QUANTILES,
            quantiles_by_layer=by_layer,
        ).compute(scheduler="sync")
        for i, target in enumerate(TARGETS):
            lo = np.where(layer == 2, wide[target][0], QUANTILES[target][0])
            lower = out[f"{target}_lower"].values.reshape(-1)[valid]
            np.testing.assert_allclose(lower, _inverse(pred[:, i] + lo), rtol=1e-6)
            assert out[f"{target}_lower"].attrs["residual_quantile"] == [
                QUANTILES[target][0],
                QUANTILES[target][0],
                wide[target][0],
            ]


def test_distance_class_quantiles_widen_the_cells_far_from_the_training_casts(features, booster):
    # One cast in a corner: cells beyond 1000 km of it take the far quantiles.
    from pipeline.model.intervals import nearest_km

    lat0, lon0 = float(features["lat"][0]), float(features["lon"][0])
    wide = {t: (3 * lo, 3 * hi) for t, (lo, hi) in QUANTILES.items()}
    by = {"0-100m|>1000 km": wide}
    out = predict_fields(
        features.chunk({"time": 1, "lat": 6}),
        booster,
        targets=TARGETS,
        transform=TRANSFORM,
        residual_quantiles=QUANTILES,
        quantiles_by_layer=by,
        train_positions=(np.array([lat0]), np.array([lon0])),
    ).compute(scheduler="sync")
    lat2, lon2 = np.meshgrid(features["lat"].values, features["lon"].values, indexing="ij")
    far = nearest_km(lat2.ravel(), lon2.ravel(), [lat0], [lon0]).reshape(lat2.shape) > 1000
    t = TARGETS[0]
    width = np.log10(out[f"{t}_upper"].values + EPS) - np.log10(out[f"{t}_lower"].values + EPS)
    surface, deep = width[:, 0], width[:, 1]
    assert far.any()
    assert (~far).any()
    assert np.nanmin(surface[:, far]) > np.nanmax(surface[:, ~far])  # far cells are wider
    # the deep layer has no distance quantiles: never wider than its layer's pair
    assert np.nanmax(deep) <= QUANTILES[t][1] - QUANTILES[t][0] + 1e-3


def test_extrapolation_flags_only_the_cell_pushed_outside_the_training_envelope(features, training):
    X, booster = training
    pushed = features.copy(deep=True).compute()
    pushed["temp_c"].values[1, 0, 4, 20] = 99.0  # far above the training maximum
    pushed["coslat"].values[1, 0, 4, 20] = -2.0  # and below its minimum
    pushed = pushed.chunk({"time": 1, "lat": 6})
    out = predict_fields(
        pushed, booster, targets=TARGETS, transform=TRANSFORM, envelope=envelope_of(X)
    ).compute(scheduler="sync")
    flag = out["extrapolation"].values
    ocean = ~np.isnan(out[TARGETS[0]].values)
    assert flag.dtype == np.int8
    assert flag[1, 0, 4, 20] == 1
    assert out["n_features_outside"].values[1, 0, 4, 20] == 2
    flag[1, 0, 4, 20] = 0
    assert (flag[ocean] == 0).all()
    row = np.array([[pushed[n].values[1, 0, 4, 20] for n in NAMES]], dtype="float32")
    assert out[TARGETS[0]].values[1, 0, 4, 20] == pytest.approx(
        _inverse(booster.inplace_predict(row))[0, 0], rel=1e-6
    )


def test_fields_carry_cf_attributes_and_keep_the_layer_coordinates(features, fields):
    assert fields[TARGETS[0]].attrs["units"] == "L-1"
    assert fields["flux_mgc_m2_d"].attrs["units"] == "mg m-2 d-1"
    assert "102-203 um" in fields[TARGETS[0]].attrs["long_name"]
    assert "90% prediction interval" in fields[f"{TARGETS[0]}_lower"].attrs["long_name"]
    assert fields["lat"].attrs["standard_name"] == "latitude"
    assert fields["lon"].attrs["units"] == "degrees_east"
    assert fields["extrapolation"].attrs["flag_meanings"].split() == [
        "not_predicted",
        "inside_envelope",
        "outside_envelope",
    ]
    assert fields["layer"].dtype == object
    assert fields["layer"].values.tolist() == ["0-100m", "100-500m", "500-1000m"]
    assert fields["layer_bottom_m"].values.tolist() == [100.0, 500.0, 1000.0]
    assert fields["layer_top_m"].attrs["positive"] == "down"
    assert tuple(fields[TARGETS[0]].dims) == DIMS


def test_units_given_override_the_defaults_and_a_single_target_model_works(features):
    X = _table(features)
    booster = xgb.train({"max_depth": 3}, xgb.DMatrix(X, label=_truth(X)[:, 1]), 10)
    out = predict_fields(
        features,
        booster,
        targets=["flux_mgc_m2_d"],
        transform=TRANSFORM,
        units={"flux_mgc_m2_d": "mg C m-2 d-1"},
        config=FieldsConfig(lat_chunk=9),
    )
    assert out["flux_mgc_m2_d"].attrs["units"] == "mg C m-2 d-1"
    assert out["flux_mgc_m2_d"].data.chunks[2] == (9, 9)
    rows = _rows(features)
    valid = ~np.isnan(rows).any(axis=1)
    got = out["flux_mgc_m2_d"].values.reshape(-1)[valid]
    np.testing.assert_allclose(got, _inverse(booster.inplace_predict(rows[valid])), rtol=1e-6)
    assert (out["extrapolation"].values.reshape(-1)[valid] == 0).all()  # no envelope given


def test_predicted_fields_stay_lazy_with_one_prediction_task_per_block(fields_lazy, features):
    assert all(isinstance(v.data, dask.array.Array) for v in fields_lazy.data_vars.values())
    graph = dict(fields_lazy.__dask_graph__())
    n_blocks = features["temp_c"].data.npartitions
    assert sum(str(k[0]).startswith("predict-fields") for k in graph if isinstance(k, tuple)) == (
        n_blocks
    )


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"targets": ["conc_102_203um_per_l"]}, r"booster predicts 2 target"),
        ({"transform": {"name": "sqrt"}}, r"transform: name 'sqrt'; valid: 'log10', 'none'"),
        (
            {"residual_quantiles": {"conc_102_203um_per_l": (-0.1, 0.1)}},
            r"residual_quantiles: no \(q_lo, q_hi\) for targets \['flux_mgc_m2_d'\]",
        ),
        (
            {"residual_quantiles": {t: (0.3, -0.3) for t in TARGETS}},
            r"q_lo > q_hi for \['conc_102_203um_per_l', 'flux_mgc_m2_d'\]",
        ),
        ({"envelope": {"temp_c": (0, 1)}}, r"envelope: no \(min, max\) for features \['chl_log'"),
    ],
    ids=["target-count", "transform", "quantile-missing", "quantile-order", "envelope"],
)
def test_predict_fields_rejects_inconsistent_options_naming_them(features, booster, change, match):
    kwargs = {"targets": TARGETS, "transform": TRANSFORM, **change}
    with pytest.raises(ValueError, match=match):
        predict_fields(features, booster, **kwargs)


def test_predict_fields_rejects_features_in_another_order_or_layout(features, booster):
    swapped = features.assign_attrs(features=[NAMES[1], NAMES[0], *NAMES[2:]])
    with pytest.raises(ValueError, match=r"booster: trained on features \['temp_c', 'chl_log'"):
        predict_fields(swapped, booster, targets=TARGETS, transform=TRANSFORM)
    with pytest.raises(ValueError, match=r"variable 'temp_c' has dims .*transpose"):
        predict_fields(
            features.transpose("time", "layer", "lon", "lat"),
            booster,
            targets=TARGETS,
            transform=TRANSFORM,
        )
    with pytest.raises(ValueError, match=r"attrs\['features'\] is missing"):
        predict_fields(
            features.assign_attrs(features=[]), booster, targets=TARGETS, transform=TRANSFORM
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lat_chunk": 0}, r"fields\.lat_chunk: 0; expected an integer >= 1 \(or None\)"),
        ({"lat_chunk": 2.5}, r"fields\.lat_chunk: 2\.5"),
        ({"interval_coverage": 1.5}, r"interval_coverage: 1\.5; expected a number in \(0, 1\)"),
        ({"write_region": "lat"}, r"fields\.write_region: 'lat'; valid: 'time'"),
    ],
    ids=["lat-chunk-zero", "lat-chunk-float", "coverage", "region"],
)
def test_fields_config_names_the_bad_key_and_value(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        FieldsConfig(**kwargs)


def test_envelope_is_min_and_max_of_each_training_feature(training):
    X, _ = training
    env = envelope_of(X)
    assert list(env) == NAMES
    assert env["temp_c"] == (float(X["temp_c"].min()), float(X["temp_c"].max()))


# --- shipping the model ----------------------------------------------------------------


def test_graph_holds_the_model_bytes_once_whatever_the_number_of_blocks(features, booster):
    raw = bytes(booster.save_raw("ubj"))
    assert len(raw) > 10_000
    sizes = {}
    for lat_chunk in (9, 3):
        out = predict_fields(
            features,
            booster,
            targets=TARGETS,
            transform=TRANSFORM,
            residual_quantiles=QUANTILES,
            config=FieldsConfig(lat_chunk=lat_chunk),
        )
        assert _count_in_graph(out, raw) == 1
        graph = dict(out.__dask_graph__())
        values = [getattr(v, "value", v) for v in graph.values()]
        assert sum(isinstance(v, bytes) and v == raw for v in values) == 1
        sizes[lat_chunk] = len(pickle.dumps(graph))
    # three times the blocks: the graph grows by tasks, far less than one more model copy
    assert sizes[3] - sizes[9] < len(raw)


def test_block_predictor_survives_a_pickle_round_trip_without_the_model(booster, features):
    raw = bytes(booster.save_raw("ubj"))
    import hashlib

    predictor = fields_module._BlockPredictor(
        hashlib.sha256(raw).hexdigest(), 2, "log10", EPS, ((-0.3, -0.5),), ((0.2, 0.4),), None, None
    )
    blob = pickle.dumps(predictor)
    assert len(blob) < 2_000
    clone = pickle.loads(blob)
    assert clone == predictor
    block = np.stack([features[n].values[:1] for n in NAMES], axis=-1)
    np.testing.assert_array_equal(clone(block, raw), predictor(block, raw))
    assert clone(block, raw).shape == (1, 3, 18, 36, 2 * 3 + 2)


def test_fields_compute_on_a_process_cluster_deserialising_the_model_once_per_worker(
    features, booster, fields, tmp_path
):
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        out = predict_fields(
            features,
            booster,
            targets=TARGETS,
            transform=TRANSFORM,
            residual_quantiles=QUANTILES,
            config=FieldsConfig(lat_chunk=3),  # 18 blocks over 2 workers
        )
        assert _count_in_graph(out, bytes(booster.save_raw("ubj"))) == 1
        computed = client.compute(out, sync=True)
        module = "pipeline.fields.predict"
        caches = client.run(lambda: len(importlib.import_module(module)._BOOSTERS))
        report = write_fields(out, str(tmp_path / "f.zarr"))
    assert sorted(caches.values()) == [1, 1]  # one deserialised booster per worker
    xr.testing.assert_equal(
        computed[[*TARGETS, "extrapolation"]], fields[[*TARGETS, "extrapolation"]]
    )
    assert report.regions_written == 3
    back = xr.open_zarr(tmp_path / "f.zarr", consolidated=False)
    xr.testing.assert_equal(back[TARGETS].compute(), cf_fields(fields)[TARGETS])


# --- writing ---------------------------------------------------------------------------


@pytest.fixture
def written(fields_lazy, tmp_path):
    url = str(tmp_path / "fields.zarr")
    report = write_fields(fields_lazy, url, attrs=PROVENANCE)
    return url, report


def test_write_fields_writes_non_numeric_variables_along_time_through_xarray(fields_lazy, tmp_path):
    flagged = fields_lazy.assign(
        extrapolated=fields_lazy["extrapolation"] > 0,  # bool: not stored directly
        month=("time", fields_lazy["time"].dt.strftime("%b").values.astype(object)),
    )
    url = str(tmp_path / "flagged.zarr")
    assert write_fields(flagged, url).regions_written == 3
    back = xr.open_zarr(url, consolidated=False).compute()
    assert back["extrapolated"].dtype == bool
    xr.testing.assert_equal(back, cf_fields(flagged.compute()))


def test_write_fields_round_trips_through_zarr_v3(written, fields):
    url, report = written
    assert report == WriteReport(url, 3, 3, 0)
    back = xr.open_zarr(url, consolidated=False)
    xr.testing.assert_equal(back.compute(), cf_fields(fields))
    assert back["extrapolation"].dtype == np.int8
    assert back.attrs["Conventions"] == "CF-1.12, ACDD-1.3"
    assert "oceanfields write_fields" in back.attrs["history"]
    assert {k: back.attrs[k] for k in PROVENANCE} == PROVENANCE
    assert back[TARGETS[0]].attrs["units"] == "L-1"
    assert zarr.open_group(url, mode="r").metadata.zarr_format == 3
    assert back[TARGETS[0]].encoding["chunks"] == (1, 3, 6, 36)


def test_layer_is_stored_as_variable_length_strings(written):
    url, _ = written
    meta = json.loads((Path(url) / "layer" / "zarr.json").read_text())
    assert meta["data_type"] == "string"
    back = xr.open_zarr(url, consolidated=False)
    assert [str(v) for v in back["layer"].values] == ["0-100m", "100-500m", "500-1000m"]


def test_rerun_of_a_finished_store_writes_no_region(written, fields_lazy):
    url, _ = written
    before = json.loads((Path(url) / "zarr.json").read_text())
    calls = []
    report = write_fields(fields_lazy, url, attrs=PROVENANCE, progress=lambda *a: calls.append(a))
    assert (report.regions_written, report.regions_skipped) == (0, 3)
    assert calls == [(3, 3)]
    assert json.loads((Path(url) / "zarr.json").read_text()) == before  # history untouched


class _Interrupted(Exception):
    pass


def test_interrupted_write_resumes_only_the_missing_regions_and_equals_a_clean_run(
    fields_lazy, fields, tmp_path
):
    url = str(tmp_path / "fields.zarr")

    def stop_after_first(done, total):
        if done == 1:
            raise _Interrupted

    with pytest.raises(_Interrupted):
        write_fields(fields_lazy, url, attrs=PROVENANCE, progress=stop_after_first, batch_mb=0)
    partial = xr.open_zarr(url, consolidated=False)
    assert np.isnan(partial[TARGETS[0]].isel(time=2).values).all()  # never written
    calls = []
    report = write_fields(
        fields_lazy, url, attrs=PROVENANCE, progress=lambda *a: calls.append(a), batch_mb=0
    )
    assert (report.regions_written, report.regions_skipped) == (2, 1)
    assert calls == [(1, 3), (2, 3), (3, 3)]
    xr.testing.assert_equal(xr.open_zarr(url, consolidated=False).compute(), cf_fields(fields))


def test_small_regions_are_computed_in_one_batch_and_each_is_marked(fields_lazy, fields, tmp_path):
    url = str(tmp_path / "fields.zarr")
    calls = []
    report = write_fields(fields_lazy, url, attrs=PROVENANCE, progress=lambda *a: calls.append(a))
    assert (report.regions_written, report.regions_skipped) == (3, 0)
    assert calls == [(0, 3), (3, 3)]  # one compute for the 3 time steps (a few kB each)
    assert sorted(p.name for p in (Path(url) / ".oceanfields" / "regions").iterdir()) == [
        "0000",
        "0001",
        "0002",
        "zarr.json",
    ]
    xr.testing.assert_equal(xr.open_zarr(url, consolidated=False).compute(), cf_fields(fields))


def test_region_written_but_not_marked_is_rewritten_alone(written, fields_lazy, fields):
    url, _ = written
    group = zarr.open_group(url, mode="r+")
    group[TARGETS[0]][1] = -7.0  # a crash after writing part of region 1 ...
    marker = Path(url) / ".oceanfields" / "regions" / "0001"
    for f in marker.iterdir():
        f.unlink()
    marker.rmdir()  # ... and before its marker
    report = write_fields(fields_lazy, url, attrs=PROVENANCE)
    assert (report.regions_written, report.regions_skipped) == (1, 2)
    xr.testing.assert_equal(xr.open_zarr(url, consolidated=False).compute(), cf_fields(fields))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda ds: (ds.drop_vars(["flux_mgc_m2_d_upper"]), PROVENANCE), r"variables: store has"),
        (lambda ds: (ds.assign_coords(lat=ds["lat"] + 0.5), PROVENANCE), r"coordinate lat values"),
        (
            lambda ds: (ds.isel(lon=slice(0, 30)), PROVENANCE),
            r"dimension 'lon': store 36, fields 30",
        ),
        (lambda ds: (ds, {**PROVENANCE, "model_id": "m-2"}), r"attribute 'model_id': store 'm-1'"),
        (
            lambda ds: (ds.assign_attrs(model_sha256="0" * 64), PROVENANCE),
            r"attribute 'model_sha256': store '[0-9a-f]{64}', now '0{64}'",
        ),
    ],
    ids=["variables", "lat-values", "lon-size", "other-model-id", "other-booster"],
)
def test_existing_store_that_differs_is_refused_naming_the_difference_and_the_fix(
    written, fields_lazy, change, match
):
    url, _ = written
    ds, attrs = change(fields_lazy)
    with pytest.raises(StoreMismatchError, match=match) as err:
        write_fields(ds, url, attrs=attrs)
    assert url in str(err.value)
    assert "new --out" in str(err.value)


def test_a_folder_that_is_not_a_zarr_store_is_refused(fields_lazy, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(StoreMismatchError, match=r"out: exists and is not a zarr store"):
        write_fields(fields_lazy, str(tmp_path / "out"))
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


def test_write_fields_to_s3_reads_back_equal_to_the_local_store(s3, written, fields_lazy):
    local, _ = written
    url = s3.url("run/fields.zarr")
    report = write_fields(fields_lazy, url, storage_options=s3.storage_options, attrs=PROVENANCE)
    assert (report.regions_written, report.regions_skipped) == (3, 0)
    back = xr.open_zarr(url, storage_options=s3.storage_options, consolidated=False)
    xr.testing.assert_identical(
        back.drop_attrs().compute(), xr.open_zarr(local, consolidated=False).drop_attrs().compute()
    )
    assert {k: back.attrs[k] for k in PROVENANCE} == PROVENANCE
    again = write_fields(fields_lazy, url, storage_options=s3.storage_options, attrs=PROVENANCE)
    assert (again.regions_written, again.regions_skipped) == (0, 3)


def test_given_history_is_kept_and_the_write_appended(fields_lazy, tmp_path):
    url = str(tmp_path / "fields.zarr")
    write_fields(fields_lazy, url, attrs={**PROVENANCE, "history": "2026-01-02 trained m-1"})
    lines = xr.open_zarr(url, consolidated=False).attrs["history"].splitlines()
    assert lines[0] == "2026-01-02 trained m-1"
    assert lines[1].endswith("oceanfields write_fields: predicted fields")


def test_written_store_opens_with_open_zarr_defaults_without_any_warning(written):
    url, _ = written
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = xr.open_zarr(url)  # consolidated=None: reads the consolidated metadata
        assert back[TARGETS[0]].shape == (3, 3, 18, 36)
    assert zarr.open_group(url, mode="r").metadata.consolidated_metadata is not None


def test_store_carries_cf_bounds_cell_methods_and_acdd_coverage(written):
    url, _ = written
    back = xr.open_zarr(url)
    assert back["time"].attrs["bounds"] == "time_bnds"
    tb = back["time_bnds"].values
    assert (tb[:, 0] == back["time"].values).all()  # stamped at the interval start
    assert str(tb[-1, 1])[:10] == "2020-04-01"
    assert back["depth_bnds"].values.tolist() == [[0, 100], [100, 500], [500, 1000]]
    assert back["depth"].attrs["positive"] == "down"
    assert back["lat_bnds"].values[0].tolist() == [-90.0, -80.0]
    assert back["lon_bnds"].values[-1].tolist() == [170.0, 180.0]
    flux = back["flux_mgc_m2_d"].attrs
    assert flux["standard_name"] == "sinking_mass_flux_of_particulate_carbon_in_sea_water"
    assert flux["cell_methods"] == "time: mean depth: mean"
    assert back[TARGETS[0]].attrs["grid_mapping"] == "crs"
    a = back.attrs
    assert (a["time_coverage_start"], a["time_coverage_end"]) == (
        "2020-01-01T00:00:00Z",
        "2020-03-01T00:00:00Z",
    )
    assert a["time_coverage_duration"] == "P3M"
    assert (a["geospatial_vertical_min"], a["geospatial_vertical_max"]) == (50.0, 750.0)
    assert (a["geospatial_lat_min"], a["geospatial_lat_max"]) == (-85.0, 85.0)
    for key in (
        "title",
        "summary",
        "keywords",
        "id",
        "naming_authority",
        "license",
        "creator_name",
        "publisher_name",
        "product_version",
        "references",
    ):
        assert a[key], key


def test_no_attribute_of_the_store_names_a_local_path(fields_lazy, tmp_path):
    url = str(tmp_path / "fields.zarr")
    local = str(tmp_path / "world" / "environment.zarr")
    write_fields(fields_lazy, url, attrs={**PROVENANCE, "environment": local})
    back = xr.open_zarr(url)
    texts = [json.dumps(back.attrs)] + [json.dumps(back[v].attrs) for v in back.variables]
    assert back.attrs["environment"] == "environment.zarr"
    assert not [t for t in texts if str(tmp_path) in t or "/tmp/" in t]
    # a re-run with the same (local) provenance resumes: the cleaned value is compared
    assert (
        write_fields(fields_lazy, url, attrs={**PROVENANCE, "environment": local}).regions_skipped
        == 3
    )
