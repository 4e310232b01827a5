"""Evaluation beyond one score: bootstrap comparisons, autocorrelation, intervals, honesty."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline.demo.honesty import honesty_check
from pipeline.model.diagnostics import (
    bootstrap_difference,
    group_scores,
    layer_skill,
    morans_i,
    variogram,
    variogram_range,
)
from pipeline.model.intervals import (
    coverage_report,
    cross_fold_coverage,
    interval_bounds,
    mondrian_quantiles,
)
from pipeline.model.split import SplitConfig
from pipeline.run.evaluation import cv_variants, resolve_split

KM_PER_DEG = 111.19


@pytest.fixture(scope="module")
def field():
    """600 points over the Atlantic with an exponential-covariance field of range 1500 km."""
    rng = np.random.default_rng(0)
    lat = rng.uniform(-50, 50, 600)
    lon = rng.uniform(-60, 0, 600)
    phi, lam = np.radians(lat), np.radians(lon)
    h = (
        np.sin((phi[:, None] - phi) / 2) ** 2
        + np.cos(phi)[:, None] * np.cos(phi) * np.sin((lam[:, None] - lam) / 2) ** 2
    )
    d = 2 * 6371.0 * np.arcsin(np.sqrt(np.clip(h, 0, 1)))
    cov = np.exp(-3 * d / 1500.0) + 1e-9 * np.eye(600)
    z = np.linalg.cholesky(cov) @ rng.normal(size=600)
    return lat, lon, z, rng.normal(size=600)


def test_morans_i_separates_a_correlated_field_from_noise(field):
    lat, lon, z, noise = field
    assert morans_i(z, lat, lon, band_km=800) > 0.15
    assert abs(morans_i(noise, lat, lon, band_km=800)) < 0.05


def test_the_variogram_range_recovers_the_fields_range_and_none_for_noise(field):
    lat, lon, z, noise = field
    fitted = variogram_range(variogram(z, lat, lon))
    assert 900 < fitted < 2500, fitted
    flat = variogram_range(variogram(noise, lat, lon))
    assert not np.isfinite(flat) or flat < 150  # no structure beyond the first bin


def test_bootstrap_says_beats_only_when_the_interval_excludes_zero():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(300, 2))
    blocks = np.arange(300) // 10
    better = y + rng.normal(scale=0.3, size=y.shape)
    worse = y + rng.normal(scale=0.6, size=y.shape)
    out = bootstrap_difference(y, better, worse, blocks)
    assert out["mse"]["beats"]
    assert out["mse"]["hi"] < 0 < -out["mse"]["diff"]
    same = bootstrap_difference(y, better, better + rng.normal(scale=0.01, size=y.shape), blocks)
    assert not same["mse"]["beats"]
    assert not same["mse"]["worse"]
    assert same["mse"]["lo"] < 0 < same["mse"]["hi"]


def test_layer_skill_and_group_scores_are_per_group():
    y = np.array([[0.0], [2.0], [0.0], [4.0]])
    clim = np.array([[1.0], [1.0], [2.0], [2.0]])
    pred = np.array([[0.0], [2.0], [2.0], [2.0]])  # perfect in a, climatology in b
    skill = layer_skill(y, pred, clim, ["a", "a", "b", "b"], targets=["c"])
    assert skill["a"]["c"] == 1.0
    assert skill["b"]["c"] == 0.0
    g = group_scores(y, pred, ["a", "a", "b", "b"], targets=["c"], min_rows=2)
    assert g["groups"]["a"]["mse"] == 0.0
    assert g["groups"]["b"]["mse"] == 4.0
    assert g["spread"]["max"] == 4.0


def test_per_layer_intervals_cover_each_layer_where_pooled_ones_do_not():
    # Residuals 4x wider in the deep layer: one pooled quantile under-covers it.
    rng = np.random.default_rng(2)
    n = 3000
    layer = np.where(np.arange(n) % 2 == 0, "0-100m", "500-1000m")
    scale = np.where(layer == "0-100m", 0.05, 0.2)[:, None]
    cal = rng.normal(size=(n, 1)) * scale
    test = rng.normal(size=(n, 1)) * scale
    zero = np.zeros((n, 1))
    q = mondrian_quantiles(cal, zero, layer, targets=["c"], coverage=0.9)
    lo, hi = interval_bounds(zero, layer, q, targets=["c"])
    per_layer = coverage_report(test, lo, hi, targets=["c"], by={"layer": layer})["by"]["layer"]
    pooled = {"pooled": q["pooled"], "groups": {}}
    plo, phi = interval_bounds(zero, layer, pooled, targets=["c"])
    pooled_cov = coverage_report(test, plo, phi, targets=["c"], by={"layer": layer})["by"]["layer"]
    for name in ("0-100m", "500-1000m"):
        assert 0.87 < per_layer[name]["mean"] < 0.93, (name, per_layer[name])
    assert pooled_cov["500-1000m"]["mean"] < 0.8  # the failure Mondrian conformal fixes


def test_coverage_report_counts_joint_coverage_over_targets():
    y = np.array([[0.0, 0.0], [0.0, 5.0], [5.0, 0.0], [0.0, 0.0]])
    r = coverage_report(y, y * 0 - 1, y * 0 + 1, targets=["a", "b"])
    assert r["per_target"] == {"a": 0.75, "b": 0.75}
    assert r["joint"] == 0.5


def _grid_dataset(values: np.ndarray, name: str) -> xr.Dataset:
    time = pd.date_range("2021-01-01", periods=values.shape[0], freq="MS")
    return xr.Dataset(
        {name: (("time", "layer", "lat", "lon"), values)},
        coords={
            "time": time,
            "layer": ["0-100m"],
            "lat": np.arange(-45.0, 46.0, 10.0),
            "lon": np.arange(-175.0, 176.0, 10.0),
        },
    )


def test_honesty_check_adds_the_noise_to_the_far_field_error_and_names_the_closest_cv():
    shape = (2, 1, 10, 36)
    truth = _grid_dataset(np.full(shape, 10.0), "c")
    fields = _grid_dataset(np.full(shape, 10.0), "c")
    lon = fields["lon"].values
    fields["c"].values[..., lon > 0] = 10.0**1.2  # 0.2 dex off in the east, far from casts
    cv = {
        "block": {"folds": [{"mse_by_target": {"c": 0.05}}, {"mse_by_target": {"c": 0.07}}]},
        "random": {"folds": [{"mse_by_target": {"c": 0.015}}]},
    }
    out = honesty_check(
        fields,
        truth,
        targets=["c", "not_in_truth"],
        transform={"name": "log10", "epsilon": 0.0},
        train_lat=np.array([0.0, 10.0]),
        train_lon=np.array([-100.0, -90.0]),
        noise_mse={"c": 0.02},
        cv_estimates=cv,
        far_km=3000.0,
    )
    assert out["targets"] == ["c"]
    # far cells: the whole east (0.04 error) and part of the west (0): between 0.02 and 0.06
    assert 0.02 + 0.02 < out["true_mse"] < 0.02 + 0.04 + 1e-9
    assert out["estimates"]["block"]["mse"] == pytest.approx(0.06)
    assert out["closest"] == "block"
    near, *_, far = out["by_distance"].values()  # classes in order of distance
    assert far > near


def test_cv_variants_share_the_cv_rows_and_keep_casts_and_cruises_whole():
    rng = np.random.default_rng(3)
    n_casts = 300
    lat = np.repeat(rng.uniform(-60, 60, n_casts), 3)
    lon = np.repeat(rng.uniform(-170, 170, n_casts), 3)
    cast = np.repeat(np.arange(n_casts).astype(str), 3)
    cruise = pd.Series(np.repeat((np.arange(n_casts) // 10).astype(str), 3))
    folds = np.where(np.arange(lat.size) < 180, -1, np.arange(lat.size) % 5)
    out = cv_variants(folds, lat, lon, cast, cruise, SplitConfig())
    assert set(out) == {"random", "random_cruise", "basins"}
    for name, v in out.items():
        assert np.array_equal(v == -1, folds == -1), name
    assert (pd.Series(out["random"]).groupby(cast).nunique() == 1).all()
    assert (pd.Series(out["random_cruise"]).groupby(cruise.to_numpy()).nunique() == 1).all()
    only = cv_variants(folds, lat, lon, cast, cruise, SplitConfig(variants=["basins"]))
    assert list(only) == ["basins"]
    np.testing.assert_array_equal(only["basins"], out["basins"])
    assert cv_variants(folds, lat, lon, cast, cruise, SplitConfig(variants=[])) == {}


def test_auto_blocks_follow_the_targets_autocorrelation_range(field):
    lat, lon, z, _ = field
    y = np.column_stack([z, z + 0.1])
    layer = np.full(lat.size, "0-100m")
    split = resolve_split(SplitConfig(block_deg="auto", buffer_km="auto"), y, lat, lon, layer)
    assert 900 / KM_PER_DEG < split.block_deg < 2500 / KM_PER_DEG
    assert split.buffer_km == pytest.approx(split.block_deg * 111.2, rel=1e-6)
    fixed = SplitConfig(block_deg=7.0)
    assert resolve_split(fixed, y, lat, lon, layer) is fixed


def test_distance_strata_cover_rows_far_from_the_casts_where_layers_alone_do_not():
    # Residuals 3x wider beyond 1000 km from the nearest cast; the test set is far-heavy.
    rng = np.random.default_rng(4)
    n = 4000
    layer = np.full(n, "0-100m")
    far_cal = rng.random(n) < 0.2
    far_test = rng.random(n) < 0.6
    cal_class = np.where(far_cal, ">1000 km", "<250 km")
    test_class = np.where(far_test, ">1000 km", "<250 km")
    cal = rng.normal(size=(n, 1)) * np.where(far_cal, 0.3, 0.1)[:, None]
    test = rng.normal(size=(n, 1)) * np.where(far_test, 0.3, 0.1)[:, None]
    zero = np.zeros((n, 1))
    layers_only = mondrian_quantiles(cal, zero, layer, targets=["c"])
    lo, hi = interval_bounds(zero, layer, layers_only, targets=["c"])
    by = {"distance": test_class}
    plain = coverage_report(test, lo, hi, targets=["c"], by=by)["by"]["distance"]
    q = mondrian_quantiles(cal, zero, layer, targets=["c"], strata=cal_class)
    assert set(q["groups"]) == {"0-100m", "0-100m|<250 km", "0-100m|>1000 km"}
    lo, hi = interval_bounds(zero, layer, q, targets=["c"], strata=test_class)
    strat = coverage_report(test, lo, hi, targets=["c"], by=by)["by"]["distance"]
    assert plain[">1000 km"]["mean"] < 0.8  # one quantile per layer misses the far rows
    for name in ("<250 km", ">1000 km"):
        assert 0.87 < strat[name]["mean"] < 0.93, (name, strat[name])
    # a stratum with too few calibration rows falls back to its layer's quantiles
    few = mondrian_quantiles(
        cal[:40], zero[:40], layer[:40], targets=["c"], strata=cal_class[:40], min_rows=30
    )
    lo1, _ = interval_bounds(zero[:1], layer[:1], few, targets=["c"], strata=[">1000 km"])
    assert lo1[0, 0] == few["groups"]["0-100m"]["c"][0]


def test_cross_fold_coverage_holds_each_fold_out_of_its_own_calibration():
    rng = np.random.default_rng(3)
    n = 2000
    layer = np.where(np.arange(n) % 2 == 0, "shallow", "deep")
    folds = np.arange(n) % 5
    scale = np.where(layer == "deep", 3.0, 1.0)[:, None]
    resid = rng.normal(size=(n, 1)) * scale
    zeros = np.zeros_like(resid)
    by = {"layer": layer}
    mondrian = cross_fold_coverage(resid, zeros, folds, layer, targets=["y"], by=by)
    assert mondrian["folds"] == 5
    assert mondrian["n"] == n
    for g in mondrian["by"]["layer"].values():  # per-layer quantiles: both near 0.9
        assert 0.87 <= g["mean"] <= 0.93, g
    pooled = cross_fold_coverage(resid, zeros, folds, np.full(n, "all"), targets=["y"], by=by)
    assert pooled["by"]["layer"]["shallow"]["mean"] > 0.97  # one quantile for both
    assert pooled["by"]["layer"]["deep"]["mean"] < 0.8
    # a fold whose errors are five times the others' is not calibrated on itself
    wild = resid * np.where(folds == 0, 5.0, 1.0)[:, None]
    out = cross_fold_coverage(wild, zeros, folds, layer, targets=["y"], by={"fold": folds})
    assert out["by"]["fold"]["0"]["mean"] < 0.5
    assert out["by"]["fold"]["1"]["mean"] > 0.85


def test_coverage_counts_the_blocks_behind_each_class():
    rng = np.random.default_rng(4)
    n = 600
    layer = np.where(np.arange(n) % 3 == 0, "deep", "shallow")
    blocks = np.arange(n) // 50  # 12 blocks of 50 rows
    basin = np.where(blocks < 2, "small sea", "ocean")  # 2 blocks against 10
    resid = rng.normal(size=(n, 1))
    out = cross_fold_coverage(
        resid,
        np.zeros_like(resid),
        blocks % 4,
        layer,
        targets=["y"],
        by={"basin": basin, "layer": layer},
        blocks=blocks,
    )
    assert out["blocks"] == 12
    assert out["by"]["basin"]["small sea"]["blocks"] == 2
    assert out["by"]["basin"]["ocean"]["blocks"] == 10
    assert out["by"]["layer"]["deep"]["blocks"] == 12
    without = cross_fold_coverage(resid, np.zeros_like(resid), blocks % 4, layer, targets=["y"])
    assert "blocks" not in without
