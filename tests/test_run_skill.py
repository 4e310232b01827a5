"""The year-1 chain on three realistic demo worlds (seeds 0, 7, 1 at 2 and 3 degrees): skill, CV
honesty, intervals, fields vs truth."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline.demo import generate_demo_world
from pipeline.run.steps import run_steps
from tests.chains import chain_config
from tests.dask_processes import two_worker_processes

pytestmark = pytest.mark.slow  # whole chains on demo worlds and clusters


def _config(root, **sections):
    # Fits on both workers, as when the thresholds below and benchmarks/results/honesty.json
    # were measured: a one-worker fit of the same rows (train.min_rows_per_worker's default
    # for 1,300 rows) gave 2deg-seed0 a test MSE of 0.090 instead of 0.076 (per-target
    # 0.075) and 0.81 interval coverage; the fit-to-fit spread is issue 15's open item.
    train = {"min_rows_per_worker": 1, **sections.pop("train", {})}
    return chain_config(root, train=train, **sections)


@pytest.fixture(scope="module")
def client():
    with two_worker_processes() as c:
        yield c


# --------------------------------------------------------------------------- skill


# The chain runs in three fixtures, one per group of steps (a run resumes where its
# _state says it stopped), so each test's set-up pays for one group only; the tests
# come in the order of the chain.


@pytest.fixture(
    scope="module",
    params=[(2.0, 0), (3.0, 7), (2.0, 1)],
    ids=["2deg-seed0", "3deg-seed7", "2deg-seed1"],
)
def skill_world(request, tmp_path_factory):
    resolution, seed = request.param
    base = tmp_path_factory.mktemp(f"skill{seed}")
    world = generate_demo_world(  # the realistic (default) world: hidden drivers, cruises
        str(base / "world"), resolution=resolution, n_profiles=500, n_images=0, seed=seed
    )
    return world, base / "run"


@pytest.fixture(scope="module")
def skill_matchup(skill_world, client):
    world, out = skill_world
    config = _config(world.root, split={"seed": world.seed})
    summary = run_steps(config, out=str(out), steps=["targets", "matchup"], client=client)
    return world, out, summary


@pytest.fixture(scope="module")
def skill_trained(skill_matchup, client):
    world, out, first = skill_matchup
    config = _config(world.root, split={"seed": world.seed})
    summary = run_steps(config, out=str(out), steps=["train"], client=client)
    return world, out, [*first.done, *summary.done]


@pytest.fixture(scope="module")
def skill_run(skill_trained, client):
    world, out, done = skill_trained
    config = _config(world.root, split={"seed": world.seed})
    summary = run_steps(config, out=str(out), client=client)
    assert summary.skipped == ["targets", "matchup", "train"]
    return world, out, [*done, *summary.done]


def test_targets_and_matchup_keep_every_cast_and_match_every_row(skill_matchup):
    _, out, summary = skill_matchup
    assert summary.done == ["targets", "matchup"]
    targets = pd.read_parquet(out / "targets.parquet")
    skipped = pd.read_parquet(out / "skipped.parquet")
    matchup = pd.read_parquet(out / "matchup.parquet")
    # nearly every cast has a (cast, layer) kept or skipped (seen: 500 and 495 of 500)
    assert pd.concat([targets["id"], skipped["id"]]).nunique() >= 490
    assert sorted(targets["layer"].unique()) == ["0-100m", "100-500m", "500-1000m"]
    kept = targets[["id", "layer"]].merge(skipped[["id", "layer"]])
    assert kept.empty  # a (cast, layer) is kept or skipped, never both
    assert len(matchup) == len(targets)
    assert summary.counts["missing_rows"] == 0


def _metrics(out):
    return json.loads((out / "metrics.json").read_text())


def test_model_minus_baseline_differences_come_with_block_bootstrap_intervals(skill_trained):
    # The model is better than the climatology on average, but with hidden drivers the
    # 90 % block-bootstrap interval of the difference may still hold 0 (seen: CV
    # -0.008 [-0.020, +0.002] and -0.003 [-0.026, +0.018]): "beats" is printed only when
    # it does not.
    _, out, _ = skill_trained
    metrics = _metrics(out)
    clim = metrics["comparisons"]["climatology"]["cv"]["mse"]  # ~1,000 out-of-fold rows
    assert clim["diff"] < 0, clim
    assert clim["hi"] - clim["lo"] > 0.005  # blocks, not rows, are resampled: wide
    # every comparison is an interval around the observed difference
    for name, entry in metrics["comparisons"].items():
        for split in ("cv", "test"):
            d = entry[split]["mse"]
            assert d["lo"] <= d["diff"] <= d["hi"], (name, split, d)
            assert d["beats"] == (d["hi"] < 0), (name, split)


def test_joint_model_is_as_good_as_independent_models_within_the_fold_spread(skill_trained):
    _, out, _ = skill_trained
    metrics = _metrics(out)
    joint = metrics["model"]["test"]["mse"]
    independent = metrics["baselines"]["per_target"]["test"]["mse"]
    spread = metrics["model"]["cv"]["std"]["mse"]
    assert joint <= independent + spread


def test_the_ceiling_is_out_of_reach_and_the_linear_model_fails_the_old_ceiling_check(
    skill_trained,
):
    # On the old world a least-squares fit passed "excess over the ceiling < 0.3 x the
    # climatology's"; hidden drivers and a finer true ocean put it out of reach.
    _, out, _ = skill_trained
    metrics = _metrics(out)
    ceiling = metrics["noise_ceiling"]["test"]["mse"]
    clim = metrics["baselines"]["climatology"]["test"]["mse"]
    linear = metrics["baselines"]["linear"]["test"]["mse"]
    assert ceiling < metrics["model"]["test"]["mse"] < clim
    assert linear - ceiling > 0.3 * (clim - ceiling), (linear, ceiling, clim)
    assert metrics["excess_over_ceiling"]["mse_ratio"] > 1.5


def test_random_cv_is_more_optimistic_than_block_cv_and_than_the_truth(skill_run):
    # The CV honesty check: random CV by cast underestimates the true error of the fields
    # far from the casts by a clear margin; block CV less so (seen: random 0.40-0.42,
    # block 0.59-0.63 of the truth; leave-one-basin-out 0.69-0.87).
    _, out, _ = skill_run
    model = _metrics(out)["model"]
    assert model["random_cv"]["mean"]["mse"] < 0.85 * model["cv"]["mean"]["mse"]
    honesty = json.loads((out / "honesty.json").read_text())
    ratios = {k: v["ratio"] for k, v in honesty["estimates"].items()}
    assert ratios["random"] < 0.7, ratios
    assert ratios["random"] < ratios["block"] < ratios["basins"] * 1.1, ratios
    assert honesty["closest"] != "random"
    near, *_, far = honesty["by_distance"].values()
    assert far > near  # the fields are worse far from the casts


def test_intervals_cover_the_test_observations_near_their_nominal_rate(skill_trained):
    _, out, _ = skill_trained
    intervals = _metrics(out)["intervals"]
    test = intervals["test"]
    assert 0.84 <= test["mean"] <= 0.96, test["mean"]  # nominal 0.9, ~300 test rows
    for layer, g in test["by"]["layer"].items():  # 50-100 test rows a layer: +-0.04
        assert 0.75 <= g["mean"] <= 1.0, (layer, g)  # seen 0.80-1.00
    assert test["joint"] < test["mean"]  # all targets at once: less often
    observed = [c["mean"] for c in intervals["calibration"]]
    assert observed == sorted(observed)  # wider nominal, more covered
    assert abs(observed[0] - 0.5) < 0.2  # seen 0.66 where far test rows are over-covered
    # every CV row, each fold calibrated without its own rows: ~1,000 rows, all blocks
    folds = intervals["cv"]
    assert folds["n"] > 2 * test["n"]
    assert 0.86 <= folds["mean"] <= 0.94, folds["mean"]
    for layer, g in folds["by"]["layer"].items():  # 300-400 rows a layer
        assert 0.82 <= g["mean"] <= 0.97, (layer, g)


def test_the_truths_own_intervals_show_how_far_chance_moves_a_groups_coverage(skill_trained):
    _, out, _ = skill_trained
    metrics = _metrics(out)
    oracle = metrics["noise_ceiling"]["intervals"]
    assert oracle["band"] == pytest.approx([0.85, 0.95])
    assert oracle["test"]["n"] == metrics["intervals"]["test"]["n"]
    # the observations are draws of the world's chain: its own intervals cover them at
    # about the nominal rate (seen 0.85-0.91 on the test blocks, 0.88-0.90 on the CV rows)
    assert 0.80 <= oracle["test"]["mean"] <= 0.96
    assert 0.86 <= oracle["cv"]["mean"] <= 0.93
    for split in ("test", "cv"):
        chance = oracle[split]["chance"]
        ranges = {
            (by, label): hi - lo
            for by, groups in chance["groups"].items()
            for label, (lo, hi) in groups.items()
        }
        assert all(lo < 0.9 < hi for g in chance["groups"].values() for lo, hi in g.values())
        sizes = {
            (by, label): g["n"]
            for by, groups in oracle[split]["by"].items()
            for label, g in groups.items()
        }
        smallest, largest = min(sizes, key=sizes.get), max(sizes, key=sizes.get)
        assert ranges[smallest] > ranges[largest], split  # fewer rows, wider by chance
        # a perfect interval keeps every layer and basin of >= 30 rows inside 0.85-0.95
        # in only part of the worlds these casts could have seen (seen 19-63 %)
        assert chance["checked"] >= 5
        assert chance["all_in_band"] < 0.9, split


def test_run_writes_every_output_and_reports_block_and_random_cv(skill_run):
    _, out, done = skill_run
    assert done == ["targets", "matchup", "train", "fields", "report"]
    for name in (
        "targets.parquet",
        "matchup.parquet",
        "model/model.ubj",
        "model/card.json",
        "metrics.json",
        "predictions.parquet",
        "report/index.html",
    ):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    model = metrics["model"]
    for key in ("test", "cv", "random_cv", "basins_cv"):
        for score in ("mse", "mv_mse"):
            value = model[key][score] if key == "test" else model[key]["mean"][score]
            assert np.isfinite(value), (key, score)
    assert set(metrics["baselines"]) == {"climatology", "linear", "per_target", "random_forest"}
    # the evaluation beyond one score: every part present and consistent
    assert set(metrics["comparisons"]) == set(metrics["baselines"])
    assert set(metrics["layer_skill"]["test"]) == {"0-100m", "100-500m", "500-1000m"}
    assert metrics["intervals"]["test"]["n"] == metrics["n_rows"]["test"]
    assert [c["nominal"] for c in metrics["intervals"]["calibration"]] == [0.5, 0.8, 0.9, 0.95]
    assert set(metrics["residuals"]["layers"]) == {"0-100m", "100-500m", "500-1000m"}
    folds = pd.read_parquet(out / "folds.parquet")
    per_cast = folds[folds["random_fold"] >= 0].groupby("id")["random_fold"].nunique()
    assert (per_cast == 1).all()  # random CV keeps a cast's layers together
    assert ((folds["fold"] == -1) == (folds["random_fold"] == -1)).all()  # same CV rows
    # the casts' cruises come through ingest (EcoPart summaries -> particles -> targets ->
    # matchup): random CV by whole cruises is scored too
    assert "random_cruise" in metrics["split"]["variants"]
    assert np.isfinite(model["random_cruise_cv"]["mean"]["mse"])
    cruise = pd.read_parquet(out / "matchup.parquet", columns=["cruise"])["cruise"].to_numpy()
    in_cv = folds["random_cruise_fold"].to_numpy() >= 0
    assert len(set(cruise[in_cv])) >= 2 * metrics["split"]["n_folds"]
    by_cruise = folds[in_cv].groupby(cruise[in_cv])["random_cruise_fold"].nunique()
    assert (by_cruise == 1).all()  # a cruise's casts share a fold
    honesty = json.loads((out / "honesty.json").read_text())
    assert set(honesty["estimates"]) >= {"block", "random", "basins"}
    assert honesty["true_mse"] > 0
    html = (out / "report" / "index.html").read_text()
    assert "random" in html.lower()
    assert "block" in html.lower()


def test_fields_cover_every_ocean_cell_and_agree_with_the_truth(skill_run):
    world, out, _ = skill_run
    fields = xr.open_zarr(out / "fields.zarr", consolidated=False)
    truth = xr.open_zarr(world.paths["truth_fields"], consolidated=False)
    env = xr.open_zarr(world.paths["environment"], consolidated=False)
    assert fields.sizes["time"] == 12
    assert list(fields["layer"].values) == ["0-100m", "100-500m", "500-1000m"]
    land = (env["mask"].isel(depth=0) == 0).values
    for name in ("conc_102_203um_per_l", "conc_203_512um_per_l", "flux_mgc_m2_d"):
        values = fields[name].values
        assert np.isnan(values[:, :, land]).all(), name
        surface = values[:, 0]
        assert np.isfinite(surface[:, ~land]).all(), name  # every ocean cell, every month
    for name in ("conc_102_203um_per_l", "conc_203_512um_per_l"):
        pred = np.log10(fields[name].values + 1e-3)
        true = np.log10(truth[name].values + 1e-3)
        both = np.isfinite(pred) & np.isfinite(true)
        assert both.mean() > 0.5
        err = np.abs(pred[both] - true[both])
        # hidden drivers: the fields miss what the predictors cannot see (old world: 0.01)
        assert np.median(err) < 0.3, (name, np.median(err))
        assert np.corrcoef(pred[both], true[both])[0, 1] > 0.25, name  # seen 0.36
        lower = np.log10(fields[f"{name}_lower"].values + 1e-3)[both]
        upper = np.log10(fields[f"{name}_upper"].values + 1e-3)[both]
        inside = (true[both] >= lower) & (true[both] <= upper)
        assert inside.mean() > 0.85, (name, inside.mean())  # 90 % interval of an observation


def test_rerunning_a_finished_run_does_no_work(skill_run, client):
    world, out, _ = skill_run
    before = (out / "metrics.json").read_bytes()
    config = _config(world.root, split={"seed": world.seed})
    again = run_steps(config, out=str(out), client=client)
    assert again.done == []
    assert again.skipped == ["targets", "matchup", "train", "fields", "report"]
    assert (out / "metrics.json").read_bytes() == before


# --------------------------------------------------------------------------- small runs
