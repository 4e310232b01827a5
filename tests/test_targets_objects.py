"""Object targets: concentrations per profile, layer and category from the objects table."""

from __future__ import annotations

import glob
import json
import pickle
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from pipeline.demo import generate_demo_world
from pipeline.demo import truth as demo_truth
from pipeline.errors import ConfigError
from pipeline.sources.ecopart_export import read_par_export
from pipeline.sources.ecotaxa import read_ecotaxa
from pipeline.targets.objects import (
    ObjectTargetConfig,
    _count_part,
    build_object_targets,
    category_column,
)
from pipeline.targets.particles import Layer, build_targets

KINDS = (*demo_truth.TYPES, *demo_truth.GROUPS)


def _objects(rows: list[tuple]) -> pd.DataFrame:
    """Objects table from (sample_id, category, status, depth_m[, fraction]) tuples."""
    frame = pd.DataFrame(
        [(*r, 1.0) if len(r) == 4 else r for r in rows],
        columns=["sample_id", "category", "status", "depth_min_m", "subsample_fraction"],
    )
    frame["depth_max_m"] = frame["depth_min_m"]
    return frame


def _sampled(ids=("p1",), volume=(100.0, 400.0, 500.0)) -> pd.DataFrame:
    layers = ["0-100m", "100-500m", "500-1000m"]
    return pd.DataFrame(
        [(i, la, v) for i in ids for la, v in zip(layers, volume, strict=True)],
        columns=["id", "layer", "volume_l"],
    )


def _conc(res, category: str) -> list[float]:
    return res.targets[f"conc_{category}_per_l"].tolist()


# --- exact concentrations on hand-made tables -----------------------------------------------


def test_layer_edges_are_top_inclusive_bottom_exclusive():
    depths = [0.0, 99.999, 100.0, 499.9, 500.0, 999.9, 1000.0, np.nan]
    objects = _objects([("p1", "fiber", "V", d) for d in depths])
    res = build_object_targets(objects, _sampled())
    # 0-100: 0, 99.999 -> 2/100 L; 100-500: 100, 499.9 -> 2/400 L; 500-1000: 500, 999.9 ->
    # 2/500 L; 1000 m lies below every layer and a NaN depth in none
    assert _conc(res, "fiber") == [0.02, 0.005, 0.004]
    assert res.counts["count_fiber"].tolist() == [2, 2, 2]
    assert res.targets[["id", "layer"]].values.tolist() == [
        ["p1", "0-100m"],
        ["p1", "100-500m"],
        ["p1", "500-1000m"],
    ]


def test_only_validated_and_predicted_objects_count_by_default():
    statuses = ["V", "P", "D", "", "V"]
    objects = _objects([("p1", "fiber", s, 50.0) for s in statuses])
    assert _conc(build_object_targets(objects, _sampled()), "fiber")[0] == 3 / 100
    only_v = ObjectTargetConfig(statuses=("V",))
    assert _conc(build_object_targets(objects, _sampled(), config=only_v), "fiber")[0] == 0.02
    every = ObjectTargetConfig(statuses=("V", "P", "D", ""))
    assert _conc(build_object_targets(objects, _sampled(), config=every), "fiber")[0] == 0.05


def test_absent_categories_and_empty_layers_are_zero_not_missing():
    objects = _objects(
        [("p1", "fiber", "V", 10.0), ("p2", "Copepoda", "V", 150.0), ("p2", "fiber", "P", 160.0)]
    )
    res = build_object_targets(objects, _sampled(ids=("p1", "p2")))
    assert res.targets_columns == ["conc_Copepoda_per_l", "conc_fiber_per_l"]
    assert _conc(res, "Copepoda") == [0.0, 0.0, 0.0, 0.0, 0.0025, 0.0]
    assert _conc(res, "fiber") == [0.01, 0.0, 0.0, 0.0, 0.0025, 0.0]
    assert not res.targets.isna().any().any()
    assert len(res.skipped) == 0


def test_subsample_fraction_scales_each_object_by_its_inverse():
    objects = _objects(
        [
            ("p1", "fiber", "V", 10.0, 0.25),
            ("p1", "fiber", "V", 20.0, 0.25),
            ("p1", "fiber", "V", 200.0, 0.5),
            ("p1", "fiber", "V", 300.0, 1.0),
        ]
    )
    res = build_object_targets(objects, _sampled())
    # 0-100: 2 objects / (100 L x 0.25) = 0.08; 100-500: (1/0.5 + 1/1) / 400 L = 0.0075
    assert _conc(res, "fiber") == [0.08, 0.0075, 0.0]
    assert res.counts["count_fiber"].tolist() == [2, 2, 0]
    without = build_object_targets(objects.drop(columns="subsample_fraction"), _sampled())
    assert _conc(without, "fiber") == [0.02, 0.005, 0.0]


def test_categories_subset_ignores_the_others_and_keeps_unseen_ones_as_zero():
    objects = _objects(
        [("p1", "fiber", "V", 10.0), ("p1", "Copepoda", "V", 10.0), ("p1", "detritus", "V", 10.0)]
    )
    config = ObjectTargetConfig(categories=("fiber", "Rhizaria"))
    res = build_object_targets(objects, _sampled(), config=config)
    assert res.targets_columns == ["conc_fiber_per_l", "conc_Rhizaria_per_l"]
    assert list(res.targets.columns) == ["id", "layer", *res.targets_columns]
    assert list(res.counts.columns) == ["id", "layer", "volume_l", "count_fiber", "count_Rhizaria"]
    assert _conc(res, "fiber") == [0.01, 0.0, 0.0]
    assert _conc(res, "Rhizaria") == [0.0, 0.0, 0.0]


def test_default_categories_are_those_seen_with_counted_statuses_sorted():
    objects = _objects(
        [
            ("p1", "fiber", "V", 10.0),
            ("p1", "Copepoda", "P", 10.0),
            ("p1", "dubious_only", "D", 10.0),
            ("p1", "", "", 10.0),
        ]
    )
    res = build_object_targets(objects, _sampled())
    assert res.categories == ("Copepoda", "fiber")


def test_category_names_become_ascii_snake_columns():
    objects = _objects([("p1", "egg<other", "V", 10.0), ("p1", "Copepoda<Maxillopoda", "V", 10.0)])
    res = build_object_targets(objects, _sampled())
    assert res.targets_columns == ["conc_Copepoda_Maxillopoda_per_l", "conc_egg_other_per_l"]
    assert category_column("Pleurobrachia pileus (té)") == "Pleurobrachia_pileus_te"
    for kind in KINDS:  # the demo truth's spelling is kept
        assert category_column(kind) == kind


def test_profile_without_any_object_is_skipped_not_zero():
    objects = _objects([("p1", "fiber", "V", 10.0)])
    res = build_object_targets(objects, _sampled(ids=("p1", "p9")))
    assert res.targets["id"].unique().tolist() == ["p1"]
    assert res.skipped["id"].tolist() == ["p9"] * 3
    assert res.skipped["reason"].str.startswith("profile has no object").all()


def test_min_objects_skips_rows_with_fewer_counted_objects():
    objects = _objects([("p1", "fiber", "V", 10.0), ("p1", "fiber", "V", 20.0)] * 2)
    objects.loc[0, "depth_min_m"] = 150.0
    res = build_object_targets(objects, _sampled(), config=ObjectTargetConfig(min_objects=2))
    assert res.targets["layer"].tolist() == ["0-100m"]
    assert res.skipped["layer"].tolist() == ["100-500m", "500-1000m"]
    assert res.skipped["reason"].iloc[0] == "fewer than min_objects=2 objects counted"


def test_rows_follow_sampled_ids_in_layer_order_and_other_layers_are_configurable():
    objects = _objects([("b", "fiber", "V", 30.0), ("a", "fiber", "V", 70.0)])
    sampled = pd.DataFrame(
        {"id": ["b", "a", "a"], "layer": ["50-100m", "50-100m", "0-50m"], "volume_l": 10.0}
    )
    config = ObjectTargetConfig(layers=(Layer(0, 50), Layer(50, 100)))
    res = build_object_targets(objects, sampled, config=config)
    assert res.targets.values.tolist() == [
        ["a", "0-50m", 0.0],
        ["a", "50-100m", 0.1],
        ["b", "50-100m", 0.0],
    ]


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"statuses": ("V", "X")}, r"\['V', 'X'\] holds unknown \['X'\]; valid: .*'V' validated"),
        ({"statuses": "VP"}, r"statuses: 'VP' is one string; expected a list of strings"),
        ({"statuses": ()}, r"statuses: \[\]; expected at least 1 name"),
        ({"categories": "fiber"}, r"categories: 'fiber' is one string; .* categories=\['fiber'\]"),
        ({"categories": ("fiber", "fiber")}, r"\['fiber', 'fiber'\] repeats \['fiber'\]; expected"),
        ({"categories": ("a b", "a-b")}, r"'a b' and 'a-b' both give the column conc_a_b_per_l"),
        ({"categories": ("<>",)}, r"'<>' has no letter or digit"),
        ({"layers": (Layer(100, 50),)}, r"layers: Layer\(.*; expected 0 <= top_m < bottom_m"),
        ({"min_objects": -1}, r"min_objects: -1; expected an integer >= 0"),
    ],
    ids=[
        "unknown-status",
        "status-string",
        "no-status",
        "category-string",
        "duplicate-category",
        "column-clash",
        "no-letters",
        "bad-layer",
        "negative-min",
    ],
)
def test_bad_options_raise_config_errors_naming_the_key_and_fix(options, match):
    with pytest.raises(ConfigError, match=match):
        ObjectTargetConfig(**options)


def test_missing_columns_name_the_table_and_the_reader():
    objects = _objects([("p1", "fiber", "V", 10.0)])
    with pytest.raises(ConfigError, match=r"objects table lacks \['status'\].*read_ecotaxa"):
        build_object_targets(objects.drop(columns="status"), _sampled())
    with pytest.raises(ConfigError, match=r"sampled lacks \['volume_l'\].*build_targets"):
        build_object_targets(objects, _sampled().drop(columns="volume_l"))


def test_sampled_layers_unknown_to_the_config_are_refused():
    objects = _objects([("p1", "fiber", "V", 10.0)])
    sampled = pd.DataFrame({"id": ["p1"], "layer": ["0-200m"], "volume_l": [1.0]})
    with pytest.raises(ConfigError, match=r"layer\(s\) \['0-200m'\] that are not in config"):
        build_object_targets(objects, sampled)


# --- laziness, partitions, pickling, a process cluster -------------------------------------


def _random_objects(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "sample_id": rng.choice(["p1", "p2", "p3"], n),
            "category": rng.choice(["fiber", "Copepoda", "detritus"], n),
            "status": rng.choice(["V", "P", "D"], n),
            "depth_min_m": rng.uniform(0, 1100, n).round(1),
            "subsample_fraction": rng.choice([0.5, 1.0], n),
        }
    )
    frame["depth_max_m"] = frame["depth_min_m"]
    return frame


def test_dask_inputs_give_lazy_results_equal_to_pandas_with_profiles_split_across_parts():
    objects = _random_objects(2000)
    sampled = _sampled(ids=("p1", "p2", "p3"))
    config = ObjectTargetConfig(categories=("Copepoda", "fiber"))
    eager = build_object_targets(objects, sampled, config=config)
    lazy = build_object_targets(
        dd.from_pandas(objects, npartitions=4),
        dd.from_pandas(sampled, npartitions=2),
        config=config,
    )
    assert isinstance(lazy.targets, dd.DataFrame)
    with dask.config.set(scheduler="sync"):
        targets, counts = dask.compute(lazy.targets, lazy.counts)
    pd.testing.assert_frame_equal(targets.reset_index(drop=True), eager.targets)
    pd.testing.assert_frame_equal(counts.reset_index(drop=True), eager.counts)
    assert (
        eager.counts.filter(like="count_").to_numpy().sum()
        == (
            objects["status"].isin(["V", "P"])
            & objects["category"].isin(["Copepoda", "fiber"])
            & (objects["depth_min_m"] < 1000)
        ).sum()
    )


def test_graph_grows_with_partitions_not_rows():
    config = ObjectTargetConfig(categories=("fiber",))

    def tasks(n_rows: int, n_parts: int) -> int:
        objects = dd.from_pandas(_random_objects(n_rows), npartitions=n_parts)
        res = build_object_targets(objects, _sampled(), config=config)
        return len(res.targets.__dask_graph__())

    assert tasks(100, 3) == tasks(20_000, 3) < tasks(100, 12)


def test_partition_counter_and_config_survive_a_pickle_round_trip():
    config = ObjectTargetConfig(categories=("fiber", "Copepoda"))
    part = _random_objects(300)
    args = (config.categories, config.statuses, config.layers)
    clone = pickle.loads(pickle.dumps((_count_part, config)))
    assert clone[1] == config
    pd.testing.assert_frame_equal(clone[0](part, *args), _count_part(part, *args))


@pytest.mark.slow
def test_object_targets_compute_on_a_process_cluster():
    distributed = pytest.importorskip("distributed")
    objects = _random_objects(1000)
    sampled = _sampled(ids=("p1", "p2", "p3"))
    eager = build_object_targets(objects, sampled)
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
        distributed.Client(cluster),
    ):
        lazy = build_object_targets(dd.from_pandas(objects, npartitions=3), sampled)
        targets = lazy.targets.compute()
    pd.testing.assert_frame_equal(targets.reset_index(drop=True), eager.targets)


# --- the demo world: recovers the truth within Poisson noise ------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_objects")
    world = generate_demo_world(
        # the simple world: Poisson-only counts, recovered within their noise
        str(root),
        resolution=5.0,
        n_profiles=60,
        n_images=3000,
        seed=1,
        world="simple",
    )
    info = json.loads(Path(world.paths["world_json"]).read_text())
    folder = world.paths["ecopart_detailed"]
    particles = read_par_export(
        f"{folder}/export_detailed_*_PAR_*.tsv",
        metadata_url=glob.glob(f"{folder}/export_detailed_*_Export_metadata_summary.tsv")[0],
    ).accepted
    objects = read_ecotaxa(f"{world.paths['ecotaxa']}/ecotaxa_export_*.tsv").accepted
    sampled = build_targets(particles).targets
    results = {
        key: build_object_targets(objects, sampled, config=ObjectTargetConfig(statuses=st))
        for key, st in (("VP", ("V", "P")), ("VPD", ("V", "P", "D")))
    }
    computed = dask.compute(
        sampled, objects, *[(r.targets, r.counts, r.skipped) for r in results.values()]
    )
    truth = pd.read_parquet(world.paths["truth_profiles"]).rename(columns={"profile_id": "id"})
    return {
        "info": info,
        "sampled": computed[0],
        "objects": computed[1],
        "results": dict(zip(results, computed[2:], strict=True)),
        "truth": truth,
        "inputs": (objects, sampled),
    }


def _status_factor(info: dict, statuses: tuple[str, ...]) -> tuple[float, float]:
    """Share of a kind's objects counted under its own category, and the share of every
    other kind's objects counted under it (predicted ones misclassified uniformly among
    the 7 other kinds), from the demo's status probabilities."""
    eco = info["ecotaxa"]
    p = eco["status_probabilities"]
    m = eco["predicted_misclassified_probability"]
    share = {"V": p["validated"], "P": p["predicted"], "D": p["dubious"]}
    wrong = share["P"] * m if "P" in statuses else 0.0
    return sum(share[s] for s in statuses) - wrong, wrong / (len(KINDS) - 1)


@pytest.mark.slow
def test_demo_sample_ids_are_the_ecopart_profile_ids(demo):
    assert set(demo["objects"]["sample_id"]) <= set(demo["sampled"]["id"])
    assert (
        demo["objects"]["subsample_fraction"]
        .eq(demo["info"]["ecotaxa"]["subsample_fraction"])
        .all()
    )


@pytest.mark.slow
def test_demo_object_targets_share_the_particle_targets_rows(demo):
    targets, counts, skipped = demo["results"]["VP"]
    assert len(skipped) == 0
    assert len(targets) == len(demo["sampled"]) == 180
    keys = ["id", "layer"]
    pd.testing.assert_frame_equal(
        targets[keys].reset_index(drop=True), demo["sampled"][keys].reset_index(drop=True)
    )
    assert sorted(c.removeprefix("count_") for c in counts.columns[3:]) == sorted(KINDS)
    fraction = demo["info"]["ecotaxa"]["subsample_fraction"]
    for kind in KINDS:
        expected = counts[f"count_{kind}"] / (counts["volume_l"] * fraction)
        np.testing.assert_allclose(targets[f"conc_{kind}_per_l"], expected, rtol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("statuses", [("V", "P"), ("V", "P", "D")], ids=["VP", "VPD"])
def test_demo_summed_concentrations_agree_with_the_truth_within_poisson_noise(demo, statuses):
    targets, counts, _ = demo["results"]["".join(statuses)]
    rows = targets.merge(counts, on=["id", "layer"]).merge(
        demo["truth"], on=["id", "layer"], suffixes=("", "_truth")
    )
    assert len(rows) == 180
    volume = rows["volume_l"].to_numpy()
    fraction = demo["info"]["ecotaxa"]["subsample_fraction"]
    # volume-weighted concentration over all 180 profile-layers: estimate and truth
    est = {k: (rows[f"conc_{k}_per_l"] * volume).sum() / volume.sum() for k in KINDS}
    true = {k: (rows[f"conc_{k}_per_l_truth"] * volume).sum() / volume.sum() for k in KINDS}
    right, leak = _status_factor(demo["info"], statuses)
    for kind in KINDS:
        # expected: the kind's own counted share plus the misclassified inflow from others
        expected = right * true[kind] + leak * (sum(true.values()) - true[kind])
        n_expected = expected * volume.sum() * fraction  # objects expected in the counts
        ratio = est[kind] / expected
        # Poisson: sd of the ratio is 1/sqrt(n_expected); 3.5 sd for every kind, and 15 %
        # for the six common kinds (>= 250 objects expected: sd 6 % or less)
        assert abs(ratio - 1) < 3.5 / np.sqrt(n_expected), (kind, ratio, n_expected)
        if n_expected >= 250:
            assert abs(ratio - 1) < 0.15, (kind, ratio)
    if statuses == ("V", "P", "D"):  # nothing left out: the truth itself, within 15 %
        for kind in ("dark_aggregate", "fluffy_aggregate", "fecal_pellet", "Copepoda"):
            assert est[kind] / true[kind] == pytest.approx(1.0, abs=0.15)


@pytest.mark.slow
def test_demo_concentrations_correlate_with_the_truth_across_rows(demo):
    targets, _, _ = demo["results"]["VP"]
    rows = targets.merge(demo["truth"], on=["id", "layer"], suffixes=("", "_truth"))
    for kind in KINDS:
        r = np.corrcoef(rows[f"conc_{kind}_per_l"], rows[f"conc_{kind}_per_l_truth"])[0, 1]
        assert r > 0.3, (kind, r)


@pytest.mark.slow
def test_demo_object_targets_are_deterministic(demo):
    objects, sampled = demo["inputs"]
    again = build_object_targets(objects, sampled)
    with dask.config.set(scheduler="sync"):
        targets, counts = dask.compute(again.targets, again.counts)
    first_targets, first_counts, _ = demo["results"]["VP"]
    pd.testing.assert_frame_equal(targets, first_targets, check_exact=True)
    pd.testing.assert_frame_equal(counts, first_counts, check_exact=True)
