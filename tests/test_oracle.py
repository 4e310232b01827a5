"""The truth's own intervals: coverage a perfect interval reaches, and its chance spread."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.demo.oracle import band_misses, oracle_coverage, oracle_line


def _world(rng, n_casts, draws, shift=0.0):
    """Rows of casts (two layers each) sharing a cast effect; draws and a real observation."""
    cast = np.repeat(np.arange(n_casts), 2)

    def observe(size):
        effect = rng.normal(0.0, 0.5, size=(*size, n_casts))[..., cast]
        return (effect + rng.normal(0.0, 0.5, size=(*size, cast.size)))[..., None]

    sims = observe((draws,))
    y = observe(())
    return sims, y + shift, cast


def test_a_perfect_interval_covers_the_nominal_rate_within_its_chance_range():
    rng = np.random.default_rng(1)
    sims, y, cast = _world(rng, n_casts=300, draws=600)
    group = np.where(cast < 150, "north", "south")
    out = oracle_coverage(
        sims, y, {"all": np.ones(cast.size, bool)}, targets=["t"], by={"region": group}
    )
    report = out["all"]
    assert out["draws"] == 300
    assert out["band"] == pytest.approx([0.85, 0.95])
    assert 0.86 <= report["mean"] <= 0.94, report["mean"]  # 600 rows, nominal 0.9
    for label, (lo, hi) in report["chance"]["groups"]["region"].items():
        assert lo < 0.9 < hi, label
        assert lo - 0.03 <= report["by"]["region"][label]["mean"] <= hi + 0.03, label
    assert report["chance"]["checked"] == 2
    assert report["chance"]["all_in_band"] > 0.9  # 300 rows a group: rarely outside
    assert report["misses"] == []


def test_small_groups_and_shared_effects_widen_the_chance_range():
    rng = np.random.default_rng(2)
    sims, y, cast = _world(rng, n_casts=120, draws=800)
    group = np.where(cast < 15, "small", "large")  # 30 rows against 210
    out = oracle_coverage(
        sims, y, {"all": np.ones(cast.size, bool)}, targets=["t"], by={"g": group}
    )["all"]
    small, large = (out["chance"]["groups"]["g"][k] for k in ("small", "large"))
    assert small[1] - small[0] > 1.8 * (large[1] - large[0])
    # 30 rows of 15 casts: a perfect interval leaves the 0.85-0.95 band in many worlds
    assert out["chance"]["all_in_band"] < 0.75


def test_a_biased_group_is_named_and_the_unbiased_one_is_not():
    rng = np.random.default_rng(3)
    sims, y, cast = _world(rng, n_casts=200, draws=400)
    group = np.where(cast < 100, "fine", "biased")
    y[group == "biased"] += 0.8  # a calibration offset the draws do not know
    out = oracle_coverage(
        sims, y, {"all": np.ones(cast.size, bool)}, targets=["t"], by={"g": group}
    )["all"]
    assert out["misses"] == ["g biased"]
    assert out["by"]["g"]["biased"]["mean"] < out["chance"]["groups"]["g"]["biased"][0]


def test_too_few_draws_are_refused():
    with pytest.raises(ValueError, match="at least 4 draws"):
        oracle_coverage(np.zeros((3, 5, 1)), np.zeros((5, 1)), {}, targets=["t"], by={})


def test_the_line_counts_model_and_truth_misses_of_the_same_groups():
    def group(mean, small=False):
        return {"mean": mean, "small": small}

    model = {"by": {"layer": {"a": group(0.80), "b": group(0.90)}, "basin": {"x": group(0.99)}}}
    truth = {
        "by": {"layer": {"a": group(0.9), "b": group(0.9)}, "basin": {"x": group(0.5, True)}},
        "misses": [],
        "chance": {"checked": 2, "all_in_band": 0.42},
    }
    metrics = {
        "intervals": {"nominal": 0.9, "test": model},
        "noise_ceiling": {"intervals": {"band": [0.85, 0.95], "min_rows": 30, "test": truth}},
    }
    assert band_misses(model, (0.85, 0.95)) == ["layer a", "basin x"]
    line = oracle_line(metrics)
    assert "(test): model 2 of 2, the truth's own 90% intervals 0;" in line
    assert "in 42% of simulated worlds" in line


def test_a_ceiling_over_some_targets_is_compared_on_those_targets(capsys):
    from pipeline.cli.output import echo_skill
    from pipeline.run.evaluation import excess_over_ceiling

    model = {"test": {"mse": 0.3, "mv_mse": 0.9, "mse_by_target": {"a": 0.2, "b": 0.4}}}
    ceiling = {
        "targets": ["a"],
        "without_truth": ["b"],
        "test": {"mse": 0.1, "mv_mse": 0.5, "r2_mean": 0.6},
    }
    excess = excess_over_ceiling(model, ceiling)
    assert excess["mse_ratio"] == pytest.approx(2.0)  # 0.2 / 0.1, not 0.3 / 0.1
    assert np.isnan(excess["mv_mse_ratio"])
    metrics = {
        "model": model,
        "targets": ["a", "b"],
        "noise_ceiling": ceiling,
        "excess_over_ceiling": excess,
    }
    echo_skill(metrics)
    out = capsys.readouterr().out
    assert "noise ceiling*" in out
    assert "* over 1 of 2 targets (no truth for b)" in out
    assert "test MSE over the same targets: 0.2000, 2.00 x the ceiling" in out
