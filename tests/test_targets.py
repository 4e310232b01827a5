"""Targets: volume-weighted layer concentrations, coverage rules, flux, truth recovery."""

from __future__ import annotations

import math
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.demo import generate_demo_world
from pipeline.errors import ConfigError
from pipeline.sources.ecopart import read_ecopart
from pipeline.sources.ecopart_raw import read_par_raw
from pipeline.targets.particles import (
    Layer,
    TargetConfig,
    build_targets,
    class_groups,
    flux_diameters_mm,
    guidi_flux,
    inverse_transform,
    particle_classes,
    transform,
)

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


def test_flux_follows_the_guidi_power_law_over_the_configured_range():
    config = TargetConfig(flux_range_um=(256.0, 323.0))
    frame = _profile(n_256_323um=2.0, n_102_128um=5.0)
    targets, _ = _targets(frame, config)
    d_mm = math.sqrt(0.256 * 0.323)
    expected = 2.0 / 10.0 * 12.5 * d_mm**3.81  # C in # L-1
    assert targets["flux_mgc_m2_d"].tolist() == pytest.approx([expected] * 3)


def test_custom_layers_and_transform_are_recorded():
    config = TargetConfig(layers=(Layer(0, 200),), transform="log10", epsilon_per_l=0.01)
    res = build_targets(dd.from_pandas(_profile(), npartitions=1), config=config)
    assert res.transform == {"name": "log10", "epsilon": 0.01}
    assert res.targets.compute()["layer"].tolist() == ["0-200m"]
    assert transform(np.array([0.99]), epsilon=0.01).tolist() == [0.0]


def test_class_groups_and_guidi_flux_are_what_the_targets_step_computes():
    rng = np.random.default_rng(0)
    columns = ["n_80p6_102um", "n_102_128um", "n_128_161um", "n_203_256um"]
    columns += ["n_1630_2050um", "n_2050_2580um", "n_2580_3250um", "n_26000_infum"]
    frame = _profile(**{c: rng.poisson(3.0, 200).astype(float) for c in columns})
    frame["volume_l"] = rng.uniform(5.0, 15.0, 200)
    config = TargetConfig()
    targets, _ = _targets(frame, config)
    classes = particle_classes(frame.columns)
    groups = class_groups(classes, config=config)
    assert groups == {
        "conc_102_203um_per_l": ["n_102_128um", "n_128_161um"],
        "conc_203_512um_per_l": ["n_203_256um"],
        "conc_512_2050um_per_l": ["n_1630_2050um"],
        "conc_2050_infum_per_l": ["n_2050_2580um", "n_2580_3250um", "n_26000_infum"],
    }
    assert list(flux_diameters_mm(classes, config=config)) == columns[1:6]
    for layer in config.layers:
        inside = frame[(frame["depth_m"] >= layer.top_m) & (frame["depth_m"] < layer.bottom_m)]
        conc = inside[[c for c, _, _ in classes]].sum() / inside["volume_l"].sum()
        conc = conc.to_frame().T
        row = targets.set_index("layer").loc[layer.name]
        for name, cols in groups.items():
            assert row[name] == pytest.approx(float(conc[cols].sum(axis=1).iloc[0]), rel=1e-12)
        flux = guidi_flux(conc, classes, config=config)
        assert row["flux_mgc_m2_d"] == pytest.approx(float(flux[0]), rel=1e-12)
        reference = sum(  # the power law written out, over the classes in 102-2580 um
            conc[c].iloc[0] * 12.5 * (math.sqrt(lo * hi) / 1000.0) ** 3.81
            for c, lo, hi in classes
            if 102.0 <= lo and hi <= 2580.0
        )
        assert row["flux_mgc_m2_d"] == pytest.approx(reference, rel=1e-12)


def test_guidi_flux_is_zero_without_a_class_in_the_flux_range():
    classes = particle_classes(["n_80p6_102um", "n_2580_3250um"])
    conc = pd.DataFrame({"n_80p6_102um": [1.0, 2.0], "n_2580_3250um": [3.0, 4.0]})
    assert guidi_flux(conc, classes, config=TargetConfig()).tolist() == [0.0, 0.0]


@given(st.lists(st.floats(0.0, 1e6, allow_subnormal=False), min_size=1, max_size=20))
def test_inverse_transform_undoes_transform(values):
    x = np.asarray(values)
    for name in ("log10", "none"):
        back = inverse_transform(transform(x, name=name, epsilon=1e-3), name=name, epsilon=1e-3)
        np.testing.assert_allclose(back, x, rtol=1e-9, atol=1e-12, err_msg=name)


def test_inverse_transform_clips_below_zero_concentration():
    assert inverse_transform(np.array([-6.0, -3.0]), epsilon=1e-3).tolist() == [0.0, 0.0]


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
    return generate_demo_world(
        # the simple world: its truth is Poisson-only, so targets check exactly
        str(root),
        resolution=10.0,
        n_profiles=24,
        n_images=40,
        seed=5,
        world="simple",
    )


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


@pytest.fixture(scope="module")
def realistic_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("realistic")
    return generate_demo_world(str(root), resolution=10.0, n_profiles=60, n_images=0, seed=2)


@pytest.mark.parametrize("reader", ["detailed", "raw"])
def test_targets_carry_the_cruise_of_each_demo_cast(realistic_world, reader):
    folder = realistic_world.paths[f"ecopart_{reader}"]
    particles = read_ecopart(folder).accepted
    targets = build_targets(particles).targets.compute()
    truth = pd.read_parquet(realistic_world.paths["truth_profiles"])
    expected = truth.groupby("profile_id")["cruise"].first()
    assert targets["id"].nunique() >= 40
    assert (targets["cruise"].to_numpy() == expected[targets["id"]].to_numpy()).all()
    assert targets["cruise"].nunique() >= 4  # cruises and time-series station-years
    assert targets.groupby("id")["cruise"].nunique().max() == 1


def test_targets_of_a_particles_table_without_cruises_name_none():
    targets, _ = _targets(_profile())
    assert targets["cruise"].tolist() == ["", "", ""]


def test_flux_of_the_real_bats_casts_is_of_the_order_of_the_sites_trap_fluxes(shared_data):
    # Six real UVP5 casts at BATS (Sargasso Sea): sediment traps there catch tens of
    # mg C m-2 d-1 and primary production is ~400-500. With C in # m-3 instead of # L-1,
    # the same casts give ~4,700 in 0-100 m: ten times the production, a unit error.
    particles = read_par_raw(str(shared_data / "ecotaxatools_bats361_uvp5")).accepted
    targets = build_targets(particles).targets.compute()
    flux = targets.groupby("layer")["flux_mgc_m2_d"].median()
    assert targets["id"].nunique() == 5  # the sixth cast covers no layer well enough
    assert 1.0 < flux["0-100m"] < 100.0, flux.to_dict()  # seen 7.4 (3 casts)
    assert flux["0-100m"] > flux.get("500-1000m", 0.0)  # fewer large particles at depth
