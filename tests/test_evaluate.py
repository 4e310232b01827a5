"""Evaluation: exact scores on tiny arrays, the multivariate MSE, folds, conformal intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pipeline.model.evaluate import interval_coverage, residual_quantiles, score, score_folds

Y = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 3.0, 2.0, 6.0]})


def test_perfect_prediction_scores_zero_error_and_r2_one():
    s = score(Y, Y.to_numpy())
    assert s["mse"] == 0.0
    assert s["mv_mse"] == 0.0
    assert s["r2"] == {"a": 1.0, "b": 1.0}
    assert s["r2_mean"] == 1.0
    assert s["bias"] == {"a": 0.0, "b": 0.0}
    assert s["n"] == 4


def test_predicting_the_mean_scores_r2_zero_and_mv_mse_one():
    mean = np.tile(Y.mean().to_numpy(), (4, 1))
    s = score(Y, mean)
    assert s["r2"] == {"a": pytest.approx(0.0, abs=1e-15), "b": pytest.approx(0.0, abs=1e-15)}
    assert s["mv_mse"] == pytest.approx(1.0, rel=1e-12)
    # per-target MSE of the mean is the population variance
    assert s["mse_by_target"] == pytest.approx({"a": 1.25, "b": 3.5})
    assert s["mse"] == pytest.approx((1.25 + 3.5) / 2)


def test_a_constant_offset_shows_as_bias_and_as_mse():
    s = score(Y, Y.to_numpy() + np.array([0.5, -2.0]))
    assert s["bias"] == {"a": 0.5, "b": -2.0}
    assert s["mse_by_target"] == {"a": 0.25, "b": 4.0}
    assert s["r2"]["a"] == pytest.approx(1 - 0.25 / 1.25)


def test_mv_mse_counts_an_error_shared_by_correlated_targets_once():
    # b = 2a exactly plus a small independent part: strongly correlated targets
    rng = np.random.default_rng(0)
    a = rng.normal(size=4000)
    y = np.column_stack([a, 2 * a + 0.1 * rng.normal(size=4000)])
    cov = np.cov(y.T, bias=True)
    along = np.array([1.0, 2.0]) * 0.3  # error along the correlation: ordinary
    across = np.array([2.0, -1.0]) * 0.3  # error against it: implausible
    s_along = score(y, y - along)
    s_across = score(y, y - across)
    assert s_along["mse"] == pytest.approx(s_across["mse"])  # MSE cannot tell them apart
    assert s_across["mv_mse"] > 50 * s_along["mv_mse"]
    # closed form: r^T S^-1 r / k
    assert s_along["mv_mse"] == pytest.approx(along @ np.linalg.solve(cov, along) / 2)


def test_mv_mse_is_invariant_to_the_units_of_each_target():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(50, 3))
    pred = y + rng.normal(scale=0.3, size=(50, 3))
    scale = np.array([1.0, 1000.0, 0.01])
    assert score(y * scale, pred * scale)["mv_mse"] == pytest.approx(score(y, pred)["mv_mse"])
    assert score(y * scale, pred * scale)["mse"] != pytest.approx(score(y, pred)["mse"])


def test_mv_mse_with_a_fixed_covariance_uses_it():
    cov = np.diag([1.25, 3.5])
    s = score(Y, Y.to_numpy() + np.array([1.0, 1.0]), cov=cov)
    assert s["mv_mse"] == pytest.approx((1 / 1.25 + 1 / 3.5) / 2)


def test_a_constant_target_drops_out_of_mv_mse_and_has_nan_r2():
    y = np.column_stack([[0.0, 1.0, 2.0, 3.0], [5.0, 5.0, 5.0, 5.0]])
    s = score(y, np.tile(y.mean(axis=0), (4, 1)), targets=["a", "const"])
    assert s["mv_mse"] == pytest.approx(1.0)  # rank 1: divided by 1, not 2
    assert np.isnan(s["r2"]["const"])
    assert s["r2_mean"] == pytest.approx(0.0, abs=1e-15)


def test_weights_count_rows_proportionally():
    y = np.array([0.0, 0.0, 1.0])
    pred = np.array([1.0, 1.0, 1.0])
    s = score(y, pred, weight=np.array([1.0, 1.0, 2.0]))
    assert s["mse"] == 0.5  # squared errors 1, 1, 0 with weights 1, 1, 2: 2 / 4
    assert s["bias"] == {"y0": 0.5}
    assert score(y, pred, weight=np.array([1.0, 0.0, 1.0]))["mse"] == 0.5


@pytest.mark.parametrize(
    ("y_pred", "kwargs", "message"),
    [
        (np.zeros((3, 2)), {}, r"y_true has shape \(4, 2\) but y_pred has shape \(3, 2\)"),
        (np.zeros((4, 2)), {"targets": ["a"]}, r"targets: 1 name\(s\) \['a'\] for 2 target"),
        (np.zeros((4, 2)), {"weight": np.ones(3)}, r"weight has 3 value\(s\) for 4 row\(s\)"),
        (np.zeros((4, 2)), {"cov": np.eye(3)}, r"cov has shape \(3, 3\); expected \(2, 2\)"),
    ],
    ids=["shape", "names", "weight", "cov"],
)
def test_bad_inputs_name_both_sides(y_pred, kwargs, message):
    with pytest.raises(ValueError, match=message):
        score(Y, y_pred, **kwargs)


def test_nan_observations_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"NaN or infinite.*epsilon"):
        score(np.array([np.nan, 1.0]), np.zeros(2))


def test_score_folds_scores_each_fold_and_summarises():
    y = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 9.0])
    pred = y + np.array([0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 100.0])
    out = score_folds(y, pred, np.array([0, 0, 1, 1, 2, 2, -1]))
    assert [f["fold"] for f in out["folds"]] == [0, 1, 2]
    assert [f["mse"] for f in out["folds"]] == [0.0, 1.0, 4.0]
    assert [f["n"] for f in out["folds"]] == [2, 2, 2]  # the test row (-1) is left out
    assert out["mean"]["mse"] == pytest.approx(5 / 3)
    assert out["std"]["mse"] == pytest.approx(np.std([0.0, 1.0, 4.0]))
    assert set(out["mean"]) == {"mse", "mv_mse", "r2_mean"}


def test_residual_quantiles_use_the_finite_sample_ranks():
    resid = np.arange(1.0, 100.0)  # 99 residuals 1..99
    q = residual_quantiles(resid, np.zeros(99), coverage=0.9)["y0"]
    # ranks floor(100 * 0.05) = 5 and ceil(100 * 0.95) = 95
    assert q == (5.0, 95.0)
    # too few rows for the coverage asked: unbounded, never too narrow
    assert residual_quantiles(np.arange(5.0), np.zeros(5), coverage=0.9)["y0"] == (
        -np.inf,
        np.inf,
    )


def test_conformal_intervals_cover_close_to_nominal_on_simulated_data():
    rng = np.random.default_rng(42)
    n_cal, n_new, coverage = 2000, 20000, 0.9
    scales = np.array([0.5, 1.0, 3.0])
    truth_cal = rng.normal(size=(n_cal, 3))
    truth_new = rng.normal(size=(n_new, 3))
    # heavy-tailed, skewed residuals: t(3) noise plus an offset the model misses
    obs_cal = truth_cal + scales * rng.standard_t(3, size=(n_cal, 3)) + 0.2
    obs_new = truth_new + scales * rng.standard_t(3, size=(n_new, 3)) + 0.2
    q = residual_quantiles(obs_cal, truth_cal, targets=["a", "b", "c"], coverage=coverage)
    lo = truth_new + np.array([q[t][0] for t in "abc"])
    hi = truth_new + np.array([q[t][1] for t in "abc"])
    covered = interval_coverage(obs_new, lo, hi, targets=list("abc"))
    for target, value in covered.items():
        # nominal 0.9; the conditional coverage given 2000 calibration rows has sd ~0.007
        assert 0.88 < value < 0.93, (target, value)


def test_interval_coverage_counts_the_bounds_as_inside():
    y = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0]})
    assert interval_coverage(y, np.full((4, 1), 1.0), np.full((4, 1), 2.0)) == {"a": 0.5}


@given(
    arrays(
        np.float64, st.tuples(st.integers(3, 30), st.integers(1, 4)), elements=st.floats(-1e3, 1e3)
    ),
    st.floats(-10, 10),
)
def test_score_invariants(y, shift):
    """MSE >= bias², R² <= 1, and a constant shift moves the bias by the shift."""
    pred = y[::-1].copy()
    s = score(y, pred)
    t = score(y, pred + shift)
    for name, r2 in s["r2"].items():
        assert np.isnan(r2) or r2 <= 1.0 + 1e-9
        assert s["mse_by_target"][name] >= s["bias"][name] ** 2 - 1e-6 * (1 + abs(s["bias"][name]))
        assert t["bias"][name] == pytest.approx(
            s["bias"][name] + shift, abs=1e-6 * (1 + abs(shift) + abs(s["bias"][name]))
        )
    assert s["mv_mse"] >= 0 or np.isnan(s["mv_mse"])


def test_mv_mse_is_undefined_with_no_more_rows_than_targets():
    # 10 rows of 10 targets: the covariance is singular where the rows never varied,
    # and a residual there was divided by ~0 (826 on the quick demo's year 2)
    from pipeline.model.evaluate import target_covariance

    rng = np.random.default_rng(0)
    y = rng.normal(size=(10, 10))
    pred = y + rng.normal(scale=0.1, size=y.shape)
    assert np.isnan(score(y, pred)["mv_mse"])
    cov = target_covariance(y)
    assert np.isnan(cov).all()
    s = score(y[:3], pred[:3], cov=cov)
    assert np.isnan(s["mv_mse"])
    assert s["mse"] == pytest.approx(np.mean((y[:3] - pred[:3]) ** 2))  # plain MSE stays
    eleven = rng.normal(size=(11, 10))
    assert np.isfinite(score(eleven, eleven + 0.1)["mv_mse"])
