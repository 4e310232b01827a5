"""The demo's noise ceiling: truth as targets, the Poisson expectation, the skill of the truth."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from scipy.stats import poisson

from pipeline.demo import expected_log_count, generate_demo_world, noise_ceiling, truth_targets
from pipeline.run.config import InputsConfig, RunConfig
from pipeline.targets import TargetConfig, build_targets, target_columns, transform

T0 = pd.Timestamp("2020-03-01", tz="UTC")

#: Per-class concentrations (# L-1) of one profile: fine classes, inside and outside the
#: target classes and the flux range.
CONC = {"80p6_102": 9.0, "102_128": 2.0, "128_161": 1.5, "203_256": 0.5, "1630_2050": 0.02}
CONC["2050_2580"] = 0.01


def test_truth_targets_equal_the_targets_step_on_noise_free_counts():
    depths = np.arange(20) * 5 + 2.5  # 0-100 m, 10 L per bin
    frame = pd.DataFrame({"profile_id": "p", "lat": 0.0, "lon": 0.0, "time": T0, "depth_m": depths})
    frame["volume_l"] = 10.0
    for cls, conc in CONC.items():
        frame[f"n_{cls}um"] = conc * 10.0
    observed = build_targets(dd.from_pandas(frame, npartitions=1)).targets.compute()
    truth = pd.DataFrame({"profile_id": ["p"], "layer": ["0-100m"]})
    for cls, conc in CONC.items():
        truth[f"conc_{cls}um_per_l"] = [conc]
    expected = truth_targets(truth, TargetConfig())
    assert list(expected.columns) == ["id", "layer", *target_columns(TargetConfig())]
    for name in target_columns(TargetConfig()):
        assert expected[name].iloc[0] == pytest.approx(observed[name].iloc[0], rel=1e-12), name
    assert expected["conc_102_203um_per_l"].iloc[0] == pytest.approx(3.5)


def test_truth_targets_leave_out_columns_that_aggregate_finer_classes():
    truth = pd.DataFrame({"profile_id": ["p"], "layer": ["0-100m"]})
    truth["conc_102_128um_per_l"] = [1.0]
    truth["conc_128_161um_per_l"] = [2.0]
    truth["conc_102_161um_per_l"] = [3.0]  # the two above together: not counted again
    out = truth_targets(truth, TargetConfig())
    assert out["conc_102_203um_per_l"].tolist() == [3.0]


def test_expected_log_count_is_the_poisson_mean_of_the_transformed_count():
    conc, volume, eps = np.array([0.05, 0.3, 4.0]), np.array([20.0, 5.0, 1.0]), 1e-3
    n = np.arange(400)[None, :]
    pmf = poisson.pmf(n, (conc * volume)[:, None])
    reference = (pmf * np.log10(n / volume[:, None] + eps)).sum(axis=1)
    got = expected_log_count(conc, volume, epsilon=eps)
    np.testing.assert_allclose(got, reference, rtol=1e-10)
    assert (got < np.log10(conc + eps)).all()  # Jensen


def test_expected_log_count_is_the_log_of_the_mean_above_exact_below():
    conc, volume = np.array([3.0]), np.array([1000.0])
    got = expected_log_count(conc, volume, epsilon=1e-3, exact_below=2000.0)
    assert got.tolist() == np.log10(conc + 1e-3).tolist()


def test_noise_ceiling_is_none_without_a_truth_entry():
    y = pd.DataFrame({"flux_mgc_m2_d": [0.0]})
    got = noise_ceiling(
        RunConfig(),
        pd.DataFrame({"id": ["p"], "layer": ["0-100m"], "volume_l": [10.0]}),
        y,
        test=np.array([True]),
        targets=["flux_mgc_m2_d"],
        transform={"name": "log10", "epsilon": 1e-3},
    )
    assert got is None


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    return generate_demo_world(
        str(root), resolution=10.0, n_profiles=24, n_images=40, seed=5, world="simple"
    )


def test_noise_ceiling_of_the_truth_itself_is_perfect_skill(world):
    config = RunConfig(
        inputs=InputsConfig(catalog="demo", params={"root": world.root}, truth="truth_profiles")
    )
    truth = pd.read_parquet(world.paths["truth_profiles"])
    expected = truth_targets(truth, config.targets)
    targets = target_columns(config.targets)
    # so many litres that the counting noise vanishes: the truth predicts itself
    matchup = expected[["id", "layer"]].assign(volume_l=1e9)
    y = pd.DataFrame({t: transform(expected[t].to_numpy(), epsilon=1e-3) for t in targets})
    test = np.arange(len(y)) % 4 == 0
    got = noise_ceiling(
        config,
        matchup,
        y,
        test=test,
        targets=targets,
        transform={"name": "log10", "epsilon": 1e-3},
    )
    assert got["rows_with_truth"] == len(y) > 0
    assert got["test"]["n"] == int(test.sum())
    assert got["all"]["mv_mse"] == pytest.approx(0.0, abs=1e-12)
    assert got["all"]["r2_mean"] == pytest.approx(1.0)
    other = dataclasses.replace(config, inputs=dataclasses.replace(config.inputs, truth=None))
    spec = {"name": "log10", "epsilon": 1e-3}
    assert noise_ceiling(other, matchup, y, test=test, targets=targets, transform=spec) is None
    # a category without a true kind ('unassigned' objects) leaves the others their ceiling
    unassigned = "conc_unassigned_per_l"
    y[unassigned] = np.random.default_rng(0).normal(size=len(y))
    part = noise_ceiling(
        config, matchup, y, test=test, targets=[*targets, unassigned], transform=spec
    )
    assert part["targets"] == targets
    assert part["without_truth"] == [unassigned]
    assert set(part["all"]["mse_by_target"]) == set(targets)
    assert part["all"]["mv_mse"] == pytest.approx(0.0, abs=1e-12)
    none = noise_ceiling(config, matchup, y, test=test, targets=[unassigned], transform=spec)
    assert none is None


def test_morphological_types_are_matched_to_the_true_kinds(world, tmp_path):
    objects = pd.read_parquet(world.paths["truth_objects"])
    aggregates = objects["kind"].isin(["dark_aggregate", "fluffy_aggregate"])
    labels = pd.DataFrame(
        {"object_id": objects["object_id"], "label": np.where(aggregates, "type_1", "type_2")}
    )
    labels.to_parquet(tmp_path / "labels.parquet", index=False)
    config = RunConfig(
        inputs=InputsConfig(
            catalog="demo",
            params={"root": world.root},
            truth="truth_profiles",
            objects="ecotaxa",
            labels=str(tmp_path / "labels.parquet"),
        ),
        object_targets=dataclasses.replace(RunConfig().object_targets, labels="machine"),
    )
    truth = pd.read_parquet(world.paths["truth_profiles"])
    targets = ["conc_type_1_per_l", "conc_type_2_per_l"]
    matchup = truth[["profile_id", "layer"]].rename(columns={"profile_id": "id"})
    matchup["volume_l"] = 1e9
    # kinds never imaged cannot be matched to a type: only the kinds of the objects count
    present = sorted(set(objects["kind"]))
    one = truth[[f"conc_{k}_per_l" for k in present if k.endswith("_aggregate")]].sum(axis=1)
    rest = truth[[f"conc_{k}_per_l" for k in present if not k.endswith("_aggregate")]]
    expected = pd.DataFrame({"conc_type_1_per_l": one, "conc_type_2_per_l": rest.sum(axis=1)})
    y = pd.DataFrame({t: transform(expected[t].to_numpy(), epsilon=1e-3) for t in targets})
    got = noise_ceiling(
        config,
        matchup,
        y,
        test=np.arange(len(y)) % 3 == 0,
        targets=targets,
        transform={"name": "log10", "epsilon": 1e-3},
    )
    assert got is not None  # morphological types no longer skip the ceiling
    # every object labelled, each kind in one type: the truth of a type is its kinds' sum
    assert len(present) >= 5
    assert got["all"]["mv_mse"] == pytest.approx(0.0, abs=1e-9)
    assert got["rows_with_truth"] == len(y)


@pytest.fixture(scope="module")
def realistic(tmp_path_factory):
    root = tmp_path_factory.mktemp("realistic")
    return generate_demo_world(
        str(root), resolution=10.0, years=(2020,), n_profiles=60, n_images=0, seed=4
    )


@pytest.fixture(scope="module")
def realistic_ceiling(realistic):
    """The realistic world's casts read back, and their ceiling with the layers as categories."""
    from pipeline.sources.ecopart import read_par_raw

    files = sorted(Path(realistic.paths["ecopart_raw"]).glob("*_PAR_raw_*.tsv"))
    observed = build_targets(read_par_raw([str(p) for p in files]).accepted).targets.compute()
    targets = target_columns(TargetConfig())
    observed = observed.dropna(subset=targets).reset_index(drop=True)
    y = pd.DataFrame({t: transform(observed[t].to_numpy(), epsilon=1e-3) for t in targets})
    config = RunConfig(
        inputs=InputsConfig(catalog="demo", params={"root": realistic.root}, truth="truth_profiles")
    )
    test = np.arange(len(y)) % 4 == 0
    args = (config, observed, y)
    kwargs = {"test": test, "targets": targets, "transform": {"name": "log10", "epsilon": 1e-3}}
    got = noise_ceiling(*args, **kwargs, by={"layer": observed["layer"].astype(str).to_numpy()})
    return got, args, kwargs


def test_realistic_ceiling_is_a_monte_carlo_over_the_full_noise(realistic, realistic_ceiling):
    got, (config, observed, y), _ = realistic_ceiling
    assert got is not None
    assert got["rows_with_truth"] == len(y) > 100
    mc = got["all"]["mse_by_target"]
    # what counting alone leaves (the simple world): Var log10(N / V) ~ 1 / (lam ln10^2)
    truth = pd.read_parquet(realistic.paths["truth_profiles"])
    keyed = observed[["id", "layer"]].merge(
        truth_targets(truth, config.targets), on=["id", "layer"], how="left"
    )
    for name in ("conc_102_203um_per_l", "conc_203_512um_per_l"):
        lam = keyed[name].to_numpy() * observed["volume_l"].to_numpy()
        counting_only = float(np.mean(1.0 / (lam * np.log(10.0) ** 2)))
        assert mc[name] > 10 * counting_only, name  # cast effects, offsets, patchiness
        assert 0.005 < mc[name] < 0.2, name  # ~0.1-0.2 dex of cast effect and offsets
        assert abs(got["all"]["bias"][name]) < 0.05, name  # the expectation is calibrated


def test_realistic_truth_intervals_cover_the_observations_at_the_nominal_rate(realistic_ceiling):
    got, args, kwargs = realistic_ceiling
    oracle = got["intervals"]
    test, rows = kwargs["test"], len(args[2])
    assert oracle["nominal"] == 0.9
    assert oracle["draws"] > 100
    assert oracle["test"]["n"] == test.sum()
    assert oracle["cv"]["n"] == rows - test.sum()
    # the world's observations are draws of the same chain: the truth's own intervals
    # cover them at the nominal rate (~180 rows x 8 targets; seen 0.88-0.90)
    everything = oracle["cv"]["mean"] * oracle["cv"]["n"] + oracle["test"]["mean"] * test.sum()
    assert 0.85 <= everything / rows <= 0.95
    for name, (lo, hi) in oracle["cv"]["chance"]["groups"]["layer"].items():
        assert lo < 0.9 < hi, name
        assert hi - lo < 0.2, name  # ~45 rows of ~45 casts a layer
    # without categories, no interval check
    assert "intervals" not in noise_ceiling(*args, **kwargs)
