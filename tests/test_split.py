"""Specification of pipeline.model.split: spatial block cross-validation."""

from __future__ import annotations

import dataclasses
import logging
import math
import pickle
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import cross_val_score

from pipeline.errors import ConfigError, InputFormatError
from pipeline.geo import EARTH_RADIUS_KM
from pipeline.model.basins import basin_of
from pipeline.model.split import SplitConfig, assign_blocks, assign_folds
from pipeline.model.split_variants import basin_folds, inner_split, random_folds
from pipeline.model.splitters import RandomCV, SpatialBlockCV, buffer_mask

KM_PER_DEG = math.pi * EARTH_RADIUS_KM / 180.0  # great-circle km per degree of arc


def haversine_km(lat1, lon1, lat2, lon2):
    """Brute-force reference: great-circle distance matrix (km)."""
    p1, p2 = np.radians(lat1)[:, None], np.radians(lat2)[None, :]
    dl = np.radians(lon2)[None, :] - np.radians(lon1)[:, None]
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


@pytest.fixture(scope="module")
def globe():
    """20 000 points uniform on the sphere and a smooth target with a strong latitude gradient."""
    rng = np.random.default_rng(42)
    n = 20_000
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    lon = rng.uniform(-180, 180, n)
    y = 3 * np.cos(np.radians(lat)) + lat / 30  # ~ -2..3, equator-peaked and N-S asymmetric
    return lat, lon, y


def naive_block_folds(blocks, config, seed):
    """Unbalanced reference: shuffle whole blocks, cut them by cumulative row share."""
    labels, inverse, sizes = np.unique(blocks, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(labels.size)
    mid = (np.cumsum(sizes[order]) - sizes[order] / 2) / sizes.sum()
    edges = config.test_fraction + np.arange(1, config.n_folds) * (
        (1 - config.test_fraction) / config.n_folds
    )
    group = np.empty(labels.size, dtype=int)
    group[order] = np.where(mid < config.test_fraction, -1, np.searchsorted(edges, mid))
    return group[inverse]


def worst_mean_deviation(folds, y):
    """Largest |fold mean - mean of the CV rows| over the CV folds, in units of std(y).

    The test set (-1) is left out: it is dealt blind to the targets by design.
    """
    cv = folds >= 0
    folds, y = folds[cv], y[cv]
    return max(abs(y[folds == g].mean() - y.mean()) for g in np.unique(folds)) / y.std()


# ------------------------------------------------------------------------ config


def test_config_defaults_are_ten_degree_blocks_five_folds_a_fifth_held_out():
    cfg = SplitConfig()
    variants = ("random", "random_cruise", "basins")
    assert dataclasses.astuple(cfg) == ("blocks", 10.0, 5, 0.2, 0.0, 0, variants)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("method", "grid", "valid: 'blocks', 'basins'"),
        ("block_deg", 0.0, "expected a number in (0, 180] (degrees)"),
        ("block_deg", 181, "expected a number in (0, 180] (degrees)"),
        ("block_deg", float("nan"), "expected a number in (0, 180] (degrees)"),
        ("block_deg", "10", "expected a number in (0, 180] (degrees)"),
        ("n_folds", 1, "expected an integer >= 2"),
        ("n_folds", 2.5, "expected an integer >= 2"),
        ("n_folds", True, "expected an integer >= 2"),
        ("test_fraction", 1.0, "expected a number in [0, 1)"),
        ("test_fraction", -0.1, "expected a number in [0, 1)"),
        ("buffer_km", -1.0, "expected a finite number >= 0 (km)"),
        ("buffer_km", float("inf"), "expected a finite number >= 0 (km)"),
        ("seed", -1, "expected an integer >= 0"),
        ("seed", 1.5, "expected an integer >= 0"),
    ],
    ids=lambda v: repr(v) if not isinstance(v, str) else v,
)
def test_config_error_names_the_key_the_value_and_the_valid_range(key, value, expected):
    message = f"split.{key}: {value!r}; {expected}."
    with pytest.raises(ConfigError, match=re.escape(message)):
        SplitConfig(**{key: value})


def test_config_accepts_integers_for_float_keys_as_yaml_gives_them():
    assert SplitConfig(block_deg=15, buffer_km=100, test_fraction=0).block_deg == 15


# ------------------------------------------------------------------------ blocks


@pytest.mark.parametrize("block_deg", [5, 10, 20, 30, 45, 90])
def test_blocks_wrap_at_the_dateline_for_a_size_dividing_360(block_deg):
    cfg = SplitConfig(block_deg=block_deg)
    b = assign_blocks([0.1] * 5, [-179.9, 179.9, -180.0, 180.0, 540.0], config=cfg)
    assert len(set(b.tolist())) == 1
    # The dateline block is centred on 180: its edges are 180 -/+ block_deg / 2.
    half = block_deg / 2
    inside = assign_blocks([0.1, 0.1], [180 - half + 0.01, -180 + half - 0.01], config=cfg)
    outside = assign_blocks([0.1, 0.1], [180 - half - 0.01, -180 + half + 0.01], config=cfg)
    assert inside.tolist() == [b[0], b[0]]
    assert b[0] not in outside.tolist()
    assert outside[0] != outside[1]


def test_blocks_close_on_the_sphere_with_equal_width_when_size_does_not_divide_360():
    # 7 degrees: round(360 / 7) = 51 sectors of 360 / 51 = 7.06 degrees, one centred on
    # the dateline, and round(180 / 7) = 26 bands of 6.92 degrees: no sliver anywhere.
    cfg = SplitConfig(block_deg=7)
    width, height = 360 / 51, 180 / 26
    centres = -180 + width * np.arange(51)
    b = assign_blocks(np.zeros(51), centres, config=cfg)
    assert len(set(b.tolist())) == 51
    dense = assign_blocks(
        np.zeros(36_000), np.linspace(-180, 180, 36_000, endpoint=False), config=cfg
    )
    assert np.unique(dense).size == 51
    widths = np.unique(dense, return_counts=True)[1]
    assert widths.max() - widths.min() <= 1  # equal widths
    edge = assign_blocks([0, 0, 0], [-179.9, 179.9, 180 - width / 2 - 0.01], config=cfg)
    assert edge[0] == edge[1] != edge[2]
    bands = assign_blocks(-90 + height * (np.arange(26) + 0.5), np.zeros(26), config=cfg)
    assert np.unique(bands).size == 26


def test_block_labels_are_band_times_sectors_plus_sector_with_poles_in_the_end_bands():
    b = assign_blocks(
        [0.5, -90, 90, -89.9, 89.9], [0, 0, 0, -179.9, 179.9], config=SplitConfig(block_deg=10)
    )
    # 18 bands of 36 sectors; sector 18 is centred on 0, sector 0 on the dateline.
    assert b.dtype == np.int64
    assert b.tolist() == [9 * 36 + 18, 18, 17 * 36 + 18, 0, 17 * 36]


def test_basins_method_labels_rows_by_basin():
    cfg = SplitConfig(method="basins")
    assert assign_blocks([30, 0], [-40, -160], config=cfg).tolist() == ["Atlantic", "Pacific"]


@pytest.mark.parametrize(
    ("lat", "lon", "match"),
    [
        ([95.0], [0.0], r"lat: 1 value\(s\) .* outside \[-90, 90\] \(first at row 0: 95\.0\)"),
        ([0.0, 0.0], [0.0, np.nan], r"lon: 1 value\(s\) not finite \(first at row 1: nan\)"),
        ([0.0, 1.0], [0.0], r"same length; got shapes \(2,\) and \(1,\)"),
    ],
    ids=["lat-out-of-range", "lon-nan", "shape-mismatch"],
)
def test_bad_coordinates_raise_input_format_error_naming_row_and_value(lat, lon, match):
    with pytest.raises(InputFormatError, match=match):
        assign_blocks(lat, lon)


# ------------------------------------------------------------------------ folds


@st.composite
def points_and_configs(draw):
    n = draw(st.integers(1, 150))
    coord = st.tuples(
        st.floats(-90, 90, allow_nan=False),
        st.floats(-180, 180, allow_nan=False, exclude_max=True),
    )
    pts = draw(st.lists(coord, min_size=n, max_size=n))
    cfg = SplitConfig(
        method=draw(st.sampled_from(["blocks", "blocks", "basins"])),
        block_deg=draw(st.sampled_from([5.0, 7.0, 10.0, 30.0, 60.0, 180.0])),
        n_folds=draw(st.integers(2, 5)),
        test_fraction=draw(st.sampled_from([0.0, 0.1, 0.2, 0.5])),
        buffer_km=draw(st.sampled_from([0.0, 500.0])),
        seed=draw(st.integers(0, 2**32)),
    )
    with_y = draw(st.booleans())
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts]), with_y, cfg


@given(points_and_configs())
def test_folds_partition_the_rows_into_test_set_and_folds_by_whole_blocks(case):
    lat, lon, with_y, cfg = case
    y = lat + np.sin(np.radians(lon)) if with_y else None
    blocks = assign_blocks(lat, lon, config=cfg)
    n_groups = cfg.n_folds + (cfg.test_fraction > 0)
    if np.unique(blocks).size < n_groups:
        with pytest.raises(ConfigError, match=r"block\(s\) hold data but n_folds="):
            assign_folds(lat, lon, y, config=cfg)
        return
    folds = assign_folds(lat, lon, y, config=cfg)
    assert folds.shape == lat.shape
    assert folds.dtype == np.int64
    expected_groups = set(range(cfg.n_folds)) | ({-1} if cfg.test_fraction > 0 else set())
    assert set(folds.tolist()) == expected_groups  # every group non-empty, nothing else
    for label in np.unique(blocks):
        assert np.unique(folds[blocks == label]).size == 1  # a block is in one group
    # The splitter: validation folds and test set partition the rows; train is disjoint.
    X = np.column_stack([lat, lon])
    cv = SpatialBlockCV(cfg)
    seen = np.zeros(lat.size, dtype=int)
    seen[cv.test_indices(X, y)] += 1
    for train, valid in cv.split(X, y):
        seen[valid] += 1
        assert np.intersect1d(train, valid).size == 0
        assert not np.isin(train, cv.test_indices(X, y)).any()
    assert (seen == 1).all()


def test_whole_blocks_never_split_across_folds_and_no_block_shared_with_the_test_set(globe):
    lat, lon, y = globe
    blocks = assign_blocks(lat, lon)
    folds = assign_folds(lat, lon, y)
    groups_per_block = pd.Series(folds).groupby(blocks).nunique()
    assert np.unique(blocks).size == 648  # 18 x 36 blocks of 10 degrees, all sampled
    assert (groups_per_block == 1).all()
    test_blocks = set(blocks[folds == -1].tolist())
    fold_blocks = set(blocks[folds >= 0].tolist())
    assert test_blocks.isdisjoint(fold_blocks)
    assert len(test_blocks) > 50  # ~20% of 648 blocks


@pytest.mark.parametrize("test_fraction", [0.1, 0.2, 0.3, 0.5])
def test_row_fractions_hold_to_within_the_largest_block(globe, test_fraction):
    # Tolerance: one largest block's share of rows (66 of 20 000 rows, 0.33%, here).
    lat, lon, y = globe
    cfg = SplitConfig(test_fraction=test_fraction, n_folds=4)
    blocks = assign_blocks(lat, lon, config=cfg)
    tolerance = np.unique(blocks, return_counts=True)[1].max() / lat.size
    assert tolerance < 0.004
    folds = assign_folds(lat, lon, y, config=cfg)
    assert abs(np.mean(folds == -1) - test_fraction) <= tolerance
    for k in range(4):
        assert abs(np.mean(folds == k) - (1 - test_fraction) / 4) <= tolerance


def test_folds_balance_a_latitude_gradient_target_far_better_than_shuffled_blocks(globe):
    # Check: over 5 seeds, the worst |fold mean - CV mean| (the 5 CV folds) is
    # within 3% of std(y) for the balanced split, and on average 5x smaller than for
    # whole blocks shuffled and cut by rows (same blocks, same fractions, no strata).
    lat, lon, y = globe
    blocks = assign_blocks(lat, lon)
    balanced, naive = [], []
    for seed in range(5):
        cfg = SplitConfig(seed=seed)
        balanced.append(worst_mean_deviation(assign_folds(lat, lon, y, config=cfg), y))
        naive.append(worst_mean_deviation(naive_block_folds(blocks, cfg, seed), y))
    assert max(balanced) < 0.03
    assert np.mean(balanced) * 5 < np.mean(naive)
    # ... and the target's spread too: each group spans the range of y.
    folds = assign_folds(lat, lon, y)
    for g in range(5):
        assert y[folds == g].min() < np.quantile(y, 0.02)
        assert y[folds == g].max() > np.quantile(y, 0.98)


def test_folds_balance_each_column_of_a_multi_target_on_the_mean_of_standardised_columns(globe):
    lat, lon, _ = globe
    y2 = np.column_stack([lat * 100.0, np.cos(np.radians(lat)) + 0.01 * lat])  # unlike scales
    folds = assign_folds(lat, lon, y2)
    for col in y2.T:
        assert worst_mean_deviation(folds, col) < 0.05


def test_a_single_column_target_splits_as_the_same_vector(globe):
    lat, lon, y = globe
    np.testing.assert_array_equal(assign_folds(lat, lon, y[:, None]), assign_folds(lat, lon, y))


def test_folds_without_target_still_balance_row_counts(globe):
    lat, lon, _ = globe
    folds = assign_folds(lat, lon)
    counts = np.bincount(folds + 1) / lat.size
    np.testing.assert_allclose(counts, [0.2] + [0.16] * 5, atol=0.003)


def test_assign_folds_is_deterministic_for_a_seed_and_differs_for_another(globe):
    lat, lon, y = globe
    first = assign_folds(lat, lon, y, config=SplitConfig(seed=3))
    again = assign_folds(lat, lon, y, config=SplitConfig(seed=3))
    other = assign_folds(lat, lon, y, config=SplitConfig(seed=4))
    np.testing.assert_array_equal(first, again)
    assert np.mean(first != other) > 0.5


def test_the_test_set_is_dealt_blind_to_the_targets(globe):
    # The same coordinates with two unrelated targets: the same test rows (only the CV
    # folds are balanced on y), and still about test_fraction of the rows.
    lat, lon, y = globe
    a = assign_folds(lat, lon, y)
    b = assign_folds(lat, lon, -(y[::-1] ** 2))
    assert np.array_equal(a == -1, b == -1)
    assert not np.array_equal(a, b)
    assert 0.15 < (a == -1).mean() < 0.25


def test_random_folds_by_group_keep_each_group_whole(globe):
    lat, _, _ = globe
    cast = np.arange(lat.size) // 3
    folds = random_folds(lat.size, groups=cast)
    per_cast = pd.Series(folds).groupby(cast).nunique()
    assert (per_cast == 1).all()
    assert set(folds.tolist()) == {-1, 0, 1, 2, 3, 4}
    assert 0.18 < (folds == -1).mean() < 0.22


def test_leave_one_basin_out_folds_are_whole_basins_and_keep_the_test_set(globe):
    lat, lon, y = globe
    folds = assign_folds(lat, lon, y)
    lobo = basin_folds(lat, lon, folds)
    assert np.array_equal(lobo == -1, folds == -1)
    basins = basin_of(lat, lon)
    for k in np.unique(lobo[lobo >= 0]):
        assert len(set(basins[lobo == k])) == 1
    assert len(np.unique(lobo[lobo >= 0])) == len(set(basins[folds >= 0]))


def test_inner_split_takes_whole_blocks_from_the_training_rows_only():
    blocks = np.repeat(np.arange(20), 10)
    train = np.flatnonzero(blocks < 15)
    fit, stop = inner_split(train, blocks, fraction=0.15, seed=3)
    assert set(fit).isdisjoint(stop)
    assert set(fit) | set(stop) == set(train)
    assert set(blocks[stop]).isdisjoint(blocks[fit])
    assert 0.15 <= stop.size / train.size < 0.3


def test_assign_folds_ignores_missing_target_values(globe):
    lat, lon, y = globe
    y = y.copy()
    y[::7] = np.nan
    folds = assign_folds(lat, lon, y)
    assert set(folds.tolist()) == {-1, 0, 1, 2, 3, 4}
    assert worst_mean_deviation(folds[np.isfinite(y)], y[np.isfinite(y)]) < 0.03


def test_basin_folds_hold_one_whole_basin_per_group():
    lat = np.array([30, 0, -10, -60, 80, 38] * 3, dtype=float)
    lon = np.array([-40, -160, 80, 0, 0, 18] * 3, dtype=float)
    folds = assign_folds(lat, lon, config=SplitConfig(method="basins"))
    basins = basin_of(lat, lon)
    assert sorted(pd.Series(folds).groupby(basins).first().tolist()) == [-1, 0, 1, 2, 3, 4]
    assert (pd.Series(folds).groupby(basins).nunique() == 1).all()


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (
            SplitConfig(method="basins", n_folds=6),
            r"6 block\(s\) hold data but n_folds=6 and a test set need at least 7; "
            r"use method 'blocks' or fewer n_folds",
        ),
        (
            SplitConfig(block_deg=90),
            r"4 block\(s\) hold data but n_folds=5 and a test set need at least 6; "
            r"use a smaller block_deg \(now 90\) or fewer n_folds",
        ),
    ],
    ids=["basins", "blocks"],
)
def test_too_few_blocks_for_the_folds_raise_config_error_naming_the_fix(config, match):
    lat = np.array([30, 0, -10, -60, 80, 38], dtype=float)
    lon = np.array([-40, -160, 80, 0, 0, 18], dtype=float)
    with pytest.raises(ConfigError, match=match):
        assign_folds(lat, lon, config=config)


def test_non_numeric_or_misshaped_target_raises_input_format_error():
    with pytest.raises(InputFormatError, match="y: cannot balance folds on a non-numeric"):
        assign_folds(
            [0.0, 50.0], [0.0, 50.0], ["a", "b"], config=SplitConfig(n_folds=2, test_fraction=0)
        )
    with pytest.raises(InputFormatError, match=r"y has shape \(3,\); expected \(2,\)"):
        assign_folds([0.0, 50.0], [0.0, 50.0], [1.0, 2.0, 3.0])


def test_assign_folds_logs_the_blocks_the_test_rows_and_rows_per_fold(globe, caplog):
    lat, lon, y = globe
    with caplog.at_level(logging.INFO, logger="pipeline.model.split"):
        folds = assign_folds(lat, lon, y)
    n_test = int((folds == -1).sum())
    rows = [int((folds == k).sum()) for k in range(5)]
    assert (
        f"split: 648 blocks of 10 x 10 deg hold 20000 rows; test set {n_test} rows" in caplog.text
    )
    assert f"rows per fold {rows}" in caplog.text


def test_log_reports_the_effective_block_size_when_it_differs_from_block_deg(globe, caplog):
    lat, lon, _ = globe
    with caplog.at_level(logging.INFO, logger="pipeline.model.split"):
        assign_folds(lat, lon, config=SplitConfig(block_deg=7))
    assert "blocks of 6.923 x 7.059 deg" in caplog.text


# ------------------------------------------------------------------------ random baseline


def test_random_folds_have_the_same_convention_and_exact_fractions():
    cfg = SplitConfig(n_folds=5, test_fraction=0.2, seed=1)
    folds = random_folds(1000, config=cfg)
    assert folds.dtype == np.int64
    assert np.bincount(folds + 1).tolist() == [200, 160, 160, 160, 160, 160]
    np.testing.assert_array_equal(folds, random_folds(1000, config=cfg))
    assert np.mean(folds != random_folds(1000, config=SplitConfig(seed=2))) > 0.5
    assert np.bincount(
        random_folds(11, config=SplitConfig(n_folds=3, test_fraction=0))
    ).tolist() == [4, 4, 3]


def test_random_folds_with_too_few_rows_raise_config_error():
    with pytest.raises(ConfigError, match=r"split: 5 row\(s\) cannot fill n_folds=5 folds and 1"):
        random_folds(5)


def test_random_cv_yields_folds_over_the_non_test_rows_and_never_buffers():
    X = pd.DataFrame({"lat": np.zeros(100), "lon": np.linspace(0, 0.1, 100)})
    cv = RandomCV(SplitConfig(n_folds=4, buffer_km=1000.0))
    splits = list(cv.split(X))
    test = cv.test_indices(X)
    assert cv.get_n_splits() == 4
    assert len(test) == 20
    for train, valid in splits:
        assert (len(train), len(valid)) == (60, 20)
        assert np.intersect1d(train, test).size == 0


# ------------------------------------------------------------------------ buffer


def test_buffer_drops_training_rows_within_the_distance_and_keeps_those_farther():
    # Held-out rows: (0, 0), (0, 179.9) and (89.9, 0). One degree of arc is 111.19 km.
    lat = np.array([0, 0, 0, 0, 0, 0, 0, 89.9, 89.9, 89.0])
    lon = np.array([0, 0.5, -0.99, 1.01, 179.9, -179.5, 178.8, 0, 180, 0])
    held = np.array([1, 0, 0, 0, 1, 0, 0, 1, 0, 0], dtype=bool)
    dropped = buffer_mask(lat, lon, held, buffer_km=1.0 * KM_PER_DEG)
    assert dropped.tolist() == [
        False,  # held out
        True,  # 0.5 deg
        True,  # 0.99 deg
        False,  # 1.01 deg
        False,  # held out
        True,  # 0.6 deg across the dateline
        False,  # 1.1 deg
        False,  # held out
        True,  # 0.2 deg across the pole
        True,  # 0.9 deg south of the held-out row near the pole
    ]


def test_buffer_matches_a_brute_force_haversine_reference():
    rng = np.random.default_rng(0)
    lat, lon = rng.uniform(-80, 80, 400), rng.uniform(-180, 180, 400)
    held = rng.random(400) < 0.2
    dist = haversine_km(lat[~held], lon[~held], lat[held], lon[held]).min(axis=1)
    dropped = buffer_mask(lat, lon, held, buffer_km=800.0)
    assert not dropped[held].any()
    np.testing.assert_array_equal(dropped[~held], dist <= 800.0)
    assert 0 < dropped.sum() < (~held).sum()


def test_buffer_of_zero_km_drops_nothing():
    assert not buffer_mask([0, 0], [0, 0], np.array([True, False]), buffer_km=0.0).any()


def test_buffer_mask_rejects_a_held_out_array_that_is_not_a_boolean_mask():
    with pytest.raises(InputFormatError, match=r"held_out has dtype int64 and shape \(1,\)"):
        buffer_mask([0, 0], [0, 0], np.array([1]), buffer_km=1.0)


def test_split_drops_training_rows_near_the_validation_fold_and_the_test_set():
    lat, lon = np.meshgrid(np.arange(-60, 61, 4.0), np.arange(-180, 180, 4.0), indexing="ij")
    X = pd.DataFrame({"lat": lat.ravel(), "lon": lon.ravel()})
    cfg = SplitConfig(block_deg=30, n_folds=3, buffer_km=600.0)
    cv = SpatialBlockCV(cfg)
    test = cv.test_indices(X)
    folds = cv.folds(X)
    for k, (train, valid) in enumerate(cv.split(X)):
        np.testing.assert_array_equal(valid, np.flatnonzero(folds == k))
        held = np.union1d(valid, test)
        assert np.intersect1d(train, held).size == 0
        others = np.setdiff1d(np.arange(len(X)), held)
        near = haversine_km(
            X.lat.values[others], X.lon.values[others], X.lat.values[held], X.lon.values[held]
        ).min(axis=1)
        np.testing.assert_array_equal(train, others[near > 600.0])
        assert 0 < (near <= 600.0).sum() < others.size


# ------------------------------------------------------------------------ scikit-learn


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(7)
    n = 3000
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    lon = rng.uniform(-180, 180, n)
    x1 = rng.normal(size=n)
    y = 3 * x1 + lat / 45 + rng.normal(scale=0.3, size=n)
    return pd.DataFrame({"lat": lat, "lon": lon, "x1": x1}), pd.Series(y, name="y")


@pytest.mark.parametrize("cv_class", [SpatialBlockCV, RandomCV])
def test_cross_val_score_runs_a_fold_per_split_with_real_skill(table, cv_class):
    X, y = table
    cv = cv_class(SplitConfig(n_folds=4, buffer_km=200.0))
    scores = cross_val_score(LinearRegression(), X, y, cv=cv, scoring="r2")
    assert scores.shape == (4,)
    assert (scores > 0.9).all()


def test_spatial_block_cv_accepts_an_n_by_2_array_of_lat_lon_and_balances_on_y(table):
    X, y = table
    cv = SpatialBlockCV(SplitConfig(n_folds=4))
    np.testing.assert_array_equal(cv.folds(X[["lat", "lon"]].to_numpy(), y), cv.folds(X, y))
    np.testing.assert_array_equal(
        cv.folds(X, y), assign_folds(X.lat, X.lon, y, config=SplitConfig(n_folds=4))
    )
    assert cv.get_n_splits() == 4
    assert "SplitConfig(" in repr(cv)


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (
            pd.DataFrame({"latitude": [0.0], "lon": [0.0]}),
            "X has no column lat; columns: latitude, lon",
        ),
        (np.zeros((3, 3)), r"X has shape \(3, 3\); expected a table with lat and lon"),
    ],
    ids=["no-lat-column", "three-columns"],
)
def test_spatial_block_cv_names_what_is_missing_from_x(X, match):
    with pytest.raises(InputFormatError, match=match):
        SpatialBlockCV().folds(X)


def test_splitters_survive_a_pickle_round_trip(table):
    X, y = table
    cv = SpatialBlockCV(SplitConfig(n_folds=3, seed=5))
    clone = pickle.loads(pickle.dumps(cv))
    assert clone.config == cv.config
    np.testing.assert_array_equal(clone.folds(X, y), cv.folds(X, y))
