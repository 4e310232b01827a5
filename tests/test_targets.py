"""Targets: volume-weighted layer concentrations, coverage rules, flux, truth recovery."""

from __future__ import annotations

import math
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from pipeline.demo import generate_demo_world
from pipeline.errors import ConfigError
from pipeline.sources.ecopart_raw import read_par_raw
from pipeline.targets.particles import Layer, TargetConfig, build_targets, transform

T0 = pd.Timestamp("2020-03-01", tz="UTC")


def _profile(pid="p1", depths=None, volume=10.0, **counts):
    depths = np.arange(0, 1000, 5) + 2.5 if depths is None else np.asarray(depths, float)
    n = len(depths)
    frame = pd.DataFrame(
        {"profile_id": pid, "lat": 10.0, "lon": -30.0, "time": T0, "depth_m": depths}
    )
    frame["volume_l"] = volume if np.ndim(volume) == 0 else np.asarray(volume, float)
    for col, value in (counts or {"n_102_128um": 1.0}).items():
        frame[col] = value if np.ndim(value) == 0 else np.asarray(value, float)
    return frame.iloc[:n]


def _targets(frame, config=None):
    res = build_targets(dd.from_pandas(frame, npartitions=1), config=config)
    return res.targets.compute(), res.skipped.compute()


def test_concentration_is_total_count_over_total_volume_not_mean_of_concentrations():
    depths = np.arange(20) * 5 + 2.5  # 0-100 m
    volume = np.where(np.arange(20) < 10, 1.0, 99.0)
    counts = np.where(np.arange(20) < 10, 10.0, 0.0)
    targets, _ = _targets(_profile(depths=depths, volume=volume, n_102_128um=counts))
    row = targets.set_index("layer").loc["0-100m"]
    assert row["volume_l"] == pytest.approx(1000.0)
    assert row["conc_102_203um_per_l"] == pytest.approx(100.0 / 1000.0)
    assert row["weight"] == row["volume_l"]


def test_ecopart_classes_merge_into_the_target_class_holding_their_lower_edge():
    frame = _profile(n_102_128um=1.0, n_128_161um=2.0, n_161_203um=3.0, n_203_256um=4.0)
    targets, _ = _targets(frame)
    row = targets.set_index("layer").loc["100-500m"]
    assert row["conc_102_203um_per_l"] == pytest.approx(6.0 / 10.0)
    assert row["conc_203_512um_per_l"] == pytest.approx(4.0 / 10.0)


def test_layers_use_bins_inside_top_inclusive_bottom_exclusive():
    targets, _ = _targets(_profile())
    by_layer = targets.set_index("layer")
    assert by_layer["volume_l"].to_dict() == {
        "0-100m": 200.0,
        "100-500m": 800.0,
        "500-1000m": 1000.0,
    }
    assert by_layer["coverage"].tolist() == [1.0, 1.0, 1.0]


def test_poorly_covered_layers_are_skipped_with_their_reason():
    shallow = _profile(pid="shallow", depths=np.arange(0, 600, 5) + 2.5)
    low_volume = _profile(pid="lowvol", volume=0.1)
    targets, skipped = _targets(pd.concat([shallow, low_volume], ignore_index=True))
    assert set(targets["id"]) == {"shallow"}
    assert set(targets.loc[targets["id"] == "shallow", "layer"]) == {"0-100m", "100-500m"}
    reasons = skipped.set_index(["id", "layer"])["reason"].to_dict()
    assert reasons[("shallow", "500-1000m")] == "depth coverage below min_coverage=0.8"
    assert reasons[("lowvol", "0-100m")] == "sampled volume below min_volume_l=50 L"
    assert len(skipped) == 1 + 3


def test_flux_follows_the_guidry_power_law_over_the_configured_range():
    config = TargetConfig(flux_range_um=(256.0, 323.0))
    frame = _profile(n_256_323um=2.0, n_102_128um=5.0)
    targets, _ = _targets(frame, config)
    d_mm = math.sqrt(0.256 * 0.323)
    expected = 2.0 / 10.0 * 1000.0 * 12.5 * d_mm**3.81
    assert targets["flux_mgc_m2_d"].tolist() == pytest.approx([expected] * 3)


def test_custom_layers_and_transform_are_recorded():
    config = TargetConfig(layers=(Layer(0, 200),), transform="log10", epsilon_per_l=0.01)
    res = build_targets(dd.from_pandas(_profile(), npartitions=1), config=config)
    assert res.transform == {"name": "log10", "epsilon": 0.01}
    assert res.targets.compute()["layer"].tolist() == ["0-200m"]
    assert transform(np.array([0.99]), epsilon=0.01).tolist() == [0.0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size_edges_um": (500.0, 100.0)}, "size_edges_um"),
        ({"transform": "sqrt"}, "transform: 'sqrt'; valid"),
        ({"layers": (Layer(100, 50),)}, "top_m < bottom_m"),
    ],
    ids=["descending-edges", "unknown-transform", "inverted-layer"],
)
def test_bad_target_config_names_the_key(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TargetConfig(**kwargs)


def test_a_particles_table_without_counts_is_refused():
    frame = _profile().drop(columns=["n_102_128um"])
    with pytest.raises(ConfigError, match="no count column"):
        build_targets(dd.from_pandas(frame, npartitions=1))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    return generate_demo_world(str(root), resolution=10.0, n_profiles=24, n_images=40, seed=5)


def test_targets_from_the_demo_world_recover_its_noise_free_truth(world):
    files = sorted(Path(world.paths["ecopart_raw"]).glob("*_PAR_raw_*.tsv"))
    particles = read_par_raw([str(p) for p in files]).accepted
    targets = build_targets(particles).targets.compute()
    truth = pd.read_parquet(world.paths["truth_profiles"])
    both = targets.merge(
        truth, left_on=["id", "layer"], right_on=["profile_id", "layer"], suffixes=("", "_truth")
    )
    assert len(both) >= 0.8 * len(targets) > 0
    for col in ("conc_102_203um_per_l", "conc_203_512um_per_l"):
        observed, expected = both[col], both[f"{col}_truth"]
        ratio = observed.sum() / expected.sum()
        assert ratio == pytest.approx(1.0, abs=0.05), col
        r = np.corrcoef(np.log10(observed + 1e-3), np.log10(expected + 1e-3))[0, 1]
        assert r > 0.95, (col, r)
