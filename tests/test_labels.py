"""Machine labels into the objects table, the consistency report and the run's targets step."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client
from PIL import Image

from pipeline.catalog import open_catalog, read_entry
from pipeline.demo import generate_demo_world
from pipeline.demo.truth import GROUPS, TYPES
from pipeline.errors import ConfigError, InputFormatError
from pipeline.images.consistency import _part_examples, consistency, write_consistency_report
from pipeline.images.labels import _relabel_part, apply_labels, labels_fingerprint, read_labels
from pipeline.run.config import load_run_config
from pipeline.run.steps import run_steps
from pipeline.targets.objects import ObjectTargetConfig, build_object_targets
from pipeline.targets.particles import build_targets

KINDS = sorted((*TYPES, *GROUPS))


def _next_kind(kind: str) -> str:
    return KINDS[(KINDS.index(kind) + 1) % len(KINDS)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("labels_world")
    world = generate_demo_world(
        # the simple world: label bookkeeping, not skill (skill: test_run_skill.py)
        str(root / "world"),
        resolution=5.0,
        n_profiles=15,
        n_images=600,
        seed=3,
        world="simple",
    )
    catalog = open_catalog("demo", root=world.root)
    objects = read_entry(catalog, "ecotaxa").accepted.compute().reset_index(drop=True)
    particles = read_entry(catalog, "ecopart_detailed").accepted
    sampled = build_targets(particles).targets.compute().reset_index(drop=True)
    truth = pd.read_parquet(world.paths["truth_objects"])
    return {"root": root, "world": world, "objects": objects, "sampled": sampled, "truth": truth}


@pytest.fixture(scope="module")
def flipped(world):
    """Labels = true kind, prob 0.9, except every 6th validated object (the next kind,
    distinct probabilities) and every 4th non-validated one (flipped too)."""
    objects = world["objects"]
    truth = world["truth"].set_index("object_id").loc[objects["object_id"]]
    labels = pd.DataFrame(
        {
            "object_id": objects["object_id"].to_numpy(),
            "label": truth["kind"].to_numpy(),
            "prob": 0.9,
            "model_id": "cnn-test",
        }
    )
    validated = np.flatnonzero(objects["status"].to_numpy() == "V")
    flip = validated[::6]
    other = np.flatnonzero(objects["status"].to_numpy() != "V")[::4]
    for rows in (flip, other):
        labels.loc[rows, "label"] = [_next_kind(k) for k in objects["category"].iloc[rows]]
    labels.loc[flip, "prob"] = np.linspace(0.41, 0.99, len(flip))
    return labels, flip


# --------------------------------------------------------------------------- apply_labels


def test_machine_labels_equal_to_the_true_kinds_give_the_truth_counts(world):
    objects, sampled, truth = world["objects"], world["sampled"], world["truth"]
    labels = truth[["object_id"]].assign(label=truth["kind"], prob=0.9)
    labelled = apply_labels(objects, labels, use="machine")
    assert (labelled["status"] == "P").all()
    assert (labelled["label_source"] == "machine").all()
    res = build_object_targets(labelled, sampled)
    assert res.categories == tuple(sorted(truth["kind"].unique()))
    # the same counts straight from the truth: profile, layer by depth, true kind
    layers = ObjectTargetConfig().layers
    layer = pd.Series("", index=truth.index)
    for la in layers:
        layer[(truth["depth_m"] >= la.top_m) & (truth["depth_m"] < la.bottom_m)] = la.name
    direct = (
        truth.assign(id=truth["profile_id"], layer=layer)
        .groupby(["id", "layer", "kind"])
        .size()
        .unstack(fill_value=0)
    )
    got = res.counts.set_index(["id", "layer"])
    expected = direct.reindex(got.index, fill_value=0)
    for kind in res.categories:
        np.testing.assert_array_equal(got[f"count_{kind}"], expected[kind], err_msg=kind)
    kept = direct.reindex(got.index).dropna()
    assert int(got.filter(like="count_").to_numpy().sum()) == int(kept.to_numpy().sum()) > 500


def test_human_first_keeps_validated_categories_and_relabels_the_others(world, flipped):
    objects = world["objects"]
    labels, flip = flipped
    out = apply_labels(objects, labels, use="human_first")
    validated = objects["status"] == "V"
    assert out["category"][validated].tolist() == objects["category"][validated].tolist()
    assert (out["status"][validated] == "V").all()
    assert (out["label_source"][validated] == "human").all()
    assert out["category"][~validated].tolist() == labels["label"][~validated].tolist()
    assert (out["status"][~validated] == "P").all()
    # machine: the flipped validated objects take the wrong label, hierarchy emptied
    machine = apply_labels(objects, labels)
    assert machine["category"].iloc[flip].tolist() == labels["label"].iloc[flip].tolist()
    assert (machine["hierarchy"].iloc[flip] == "").all()
    same = machine["category"] == objects["category"]
    assert machine["hierarchy"][same].tolist() == objects["hierarchy"][same].tolist()


def test_low_probability_and_missing_labels_are_left_out_and_counted(world):
    objects, sampled = world["objects"], world["sampled"]
    labels = pd.DataFrame(
        {"object_id": objects["object_id"], "label": objects["category"], "prob": 0.9}
    )
    low = np.arange(0, len(labels), 5)
    labels.loc[low, "prob"] = 0.3
    missing = np.setdiff1d(np.arange(2, len(labels), 7), low)  # disjoint from low
    labels = labels.drop(index=missing)
    out = apply_labels(objects, labels, min_prob=0.5)
    counts = out["label_source"].value_counts()
    assert counts["below_min_prob"] == len(low)
    assert counts["unlabelled"] == len(missing)
    assert counts["machine"] == len(objects) - len(low) - len(missing)
    dropped = out["label_source"] != "machine"
    assert (out["category"][dropped] == "").all()
    assert (out["status"][dropped] == "").all()
    everything = ObjectTargetConfig(statuses=("V", "P", "D", ""))
    total = build_object_targets(out, sampled, config=everything).counts.filter(like="count_")
    base = apply_labels(objects, labels.assign(prob=0.9))  # only the missing ones left out
    full = build_object_targets(base, sampled, config=everything).counts.filter(like="count_")
    # the difference is the low-probability objects inside the sampled (profile, layer)s
    lows = objects.iloc[low]
    layer = pd.Series("", index=lows.index)
    for la in everything.layers:
        layer[(lows["depth_min_m"] >= la.top_m) & (lows["depth_min_m"] < la.bottom_m)] = la.name
    inside = pd.MultiIndex.from_arrays([lows["sample_id"], layer]).isin(
        pd.MultiIndex.from_frame(sampled[["id", "layer"]])
    )
    assert int(full.to_numpy().sum()) - int(total.to_numpy().sum()) == int(inside.sum()) > 100


def test_dask_inputs_with_several_partitions_equal_pandas(world, flipped):
    objects, sampled = world["objects"], world["sampled"]
    labels, _ = flipped
    lazy_objects = dd.from_pandas(objects, npartitions=4)
    lazy_labels = dd.from_pandas(labels.sample(frac=1.0, random_state=0), npartitions=3)
    for use in ("machine", "human_first"):
        eager = apply_labels(objects, labels, use=use, min_prob=0.5)
        lazy = apply_labels(lazy_objects, lazy_labels, use=use, min_prob=0.5)
        assert isinstance(lazy, dd.DataFrame)
        with dask.config.set(scheduler="sync"):
            got = lazy.compute()
        key = ["object_id"]
        pd.testing.assert_frame_equal(
            got.sort_values(key).reset_index(drop=True),
            eager.sort_values(key).reset_index(drop=True),
            check_dtype=False,
        )
        t_eager = build_object_targets(eager, sampled).targets
        t_lazy = build_object_targets(lazy, sampled).targets.compute()
        pd.testing.assert_frame_equal(t_lazy.reset_index(drop=True), t_eager)
    eager_c = consistency(objects, labels, n_examples=3)
    lazy_c = consistency(lazy_objects, lazy_labels, n_examples=3)
    pd.testing.assert_frame_equal(lazy_c.per_category, eager_c.per_category)
    pd.testing.assert_frame_equal(lazy_c.confusion, eager_c.confusion)
    pd.testing.assert_frame_equal(lazy_c.worst_examples, eager_c.worst_examples)
    assert lazy_c.model_ids == eager_c.model_ids == ["cnn-test"]


def test_graph_grows_with_partitions_not_rows():
    def graph(n_rows: int) -> int:
        ids = [f"o{i}" for i in range(n_rows)]
        objects = pd.DataFrame({"object_id": ids, "category": "a", "status": "V"})
        labels = pd.DataFrame({"object_id": ids, "label": "b", "prob": 0.5})
        out = apply_labels(
            dd.from_pandas(objects, npartitions=4), dd.from_pandas(labels, npartitions=3)
        )
        return len(out.__dask_graph__())

    assert graph(100) == graph(5000)


def test_partition_functions_survive_a_pickle_round_trip(world, flipped):
    labels, _ = flipped
    joined = world["objects"].merge(
        labels[["object_id", "label", "prob"]].rename(columns={"label": "_label", "prob": "_prob"}),
        on="object_id",
        how="left",
    )
    for func, args in ((_relabel_part, ("machine", 0.5, "x")), (_part_examples, (2,))):
        clone = pickle.loads(pickle.dumps(func))
        pd.testing.assert_frame_equal(clone(joined, *args), func(joined, *args))


def test_repeated_object_ids_in_the_labels_are_refused(world):
    objects = world["objects"]
    labels = pd.DataFrame({"object_id": objects["object_id"], "label": "fiber"})
    twice = pd.concat([labels, labels.iloc[:1]])
    with pytest.raises(InputFormatError, match=r"more than one row.*one label"):
        apply_labels(objects, twice)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"use": "robot"}, r"use='robot'; valid: 'machine', 'human_first'"),
        ({"min_prob": 1.5}, r"min_prob=1.5 must be between 0 and 1"),
        ({"min_prob": 0.2, "drop_prob": True}, r"no 'prob' column.*min_prob to 0"),
    ],
    ids=["use", "min-prob-range", "min-prob-without-prob"],
)
def test_bad_options_raise_config_errors_naming_the_fix(world, kwargs, match):
    labels = pd.DataFrame({"object_id": ["a"], "label": ["fiber"], "prob": [0.9]})
    if kwargs.pop("drop_prob", False):
        labels = labels.drop(columns="prob")
    with pytest.raises(ConfigError, match=match):
        apply_labels(world["objects"], labels, **kwargs)


# --------------------------------------------------------------------------- consistency


def test_consistency_counts_exactly_the_flipped_validated_objects(world, flipped):
    objects = world["objects"]
    labels, flip = flipped
    res = consistency(objects, labels, n_examples=3)
    validated = objects[objects["status"] == "V"]
    flipped_cat = objects["category"].iloc[flip]
    per = res.per_category.set_index("category")
    assert sorted(per.index) == sorted(validated["category"].unique())
    for cat, row in per.iterrows():
        n_flip = int((flipped_cat == cat).sum())
        assert row["n_validated"] == row["n_labelled"] == int((validated["category"] == cat).sum())
        assert row["n_labelled"] - row["n_agree"] == n_flip, cat
        assert row["disagreement"] == pytest.approx(n_flip / row["n_labelled"])
        assert row["most_confused_with"] == (_next_kind(cat) if n_flip else "")
        assert res.confusion.loc[cat, cat] == row["n_agree"]
    assert res.overall_agreement == pytest.approx(1 - len(flip) / len(validated))
    assert int(res.confusion.to_numpy().sum()) == len(validated)
    # worst examples: the 3 flipped objects of highest prob per category, in that order
    flips = labels.iloc[flip].assign(human=flipped_cat.to_numpy())
    expected = (
        flips.sort_values("prob", ascending=False)
        .groupby("human")
        .head(3)
        .sort_values(["human", "prob"], ascending=[True, False])
    )
    assert res.worst_examples["object_id"].tolist() == expected["object_id"].tolist()
    assert (res.worst_examples["machine"] != res.worst_examples["human"]).all()
    assert res.model_ids == ["cnn-test"]


def test_consistency_report_writes_valid_json_figures_and_a_page(world, flipped, tmp_path):
    labels, _ = flipped
    res = consistency(world["objects"], labels, n_examples=3)
    worst = res.worst_examples.copy()
    worst.loc[0, "image"] = str(tmp_path / "missing.png")  # unreadable: skipped, counted
    res = dataclasses.replace(res, worst_examples=worst)
    files = write_consistency_report(res, str(tmp_path / "rep"), examples_per_category=3)
    rep = tmp_path / "rep"
    doc = json.loads((rep / files["json"]).read_text())
    assert doc["n_validated"] == int(res.per_category["n_validated"].sum())
    assert doc["plate"] == {"shown": len(worst) - 1, "unreadable": 1}
    assert doc["overall_agreement"] == pytest.approx(res.overall_agreement)
    for name in ("confusion", "worst_examples"):
        with Image.open(rep / files[name]) as img:
            assert img.format == "PNG"
            assert min(img.size) > 300
    html = (rep / files["index"]).read_text()
    for cat in res.per_category["category"]:
        assert cat in html
    assert 'src="confusion.png"' in html
    assert 'src="worst_examples.png"' in html


# --------------------------------------------------------------------------- the run


@pytest.fixture(scope="module")
def client():
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as c:
        yield c


def _write_labels(folder: Path, labels: pd.DataFrame, parts: int = 2) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for i, chunk in enumerate(np.array_split(np.arange(len(labels)), parts)):
        labels.iloc[chunk].to_parquet(folder / f"part.{i}.parquet", index=False)
    return str(folder)


def _run_config(world, labels_url, **object_targets):
    return load_run_config(
        {
            "inputs": {
                "catalog": "demo",
                "params": {"root": str(world["world"].root)},
                "objects": "ecotaxa",
                "labels": labels_url,
            },
            "targets": {"layers": [[0, 200]]},
            "object_targets": {"labels": "machine", **object_targets},
        }
    )


def test_run_targets_step_counts_machine_labels_and_redoes_when_labels_change(world, client):
    truth = world["truth"]
    labels = truth[["object_id"]].assign(label=truth["kind"], prob=0.9)
    url = _write_labels(world["root"] / "labels", labels)
    config = _run_config(world, url)
    out = str(world["root"] / "run")
    first = run_steps(config, out=out, steps=["targets"], client=client)
    assert first.done == ["targets"]
    targets = pd.read_parquet(f"{out}/targets.parquet")
    assert targets["layer"].unique().tolist() == ["0-200m"]
    kinds = sorted(truth["kind"].unique())
    assert [
        c
        for c in targets.columns
        if c.startswith("conc_")
        and c.endswith("_per_l")
        and c.removeprefix("conc_").removesuffix("_per_l") in KINDS
    ] == [f"conc_{k}_per_l" for k in kinds]
    assert first.counts["objects_relabelled"] == len(world["objects"])
    assert first.counts["objects_unlabelled"] == first.counts["objects_below_min_prob"] == 0

    again = run_steps(config, out=out, steps=["targets"], client=client)
    assert again.skipped == ["targets"]
    assert again.done == []

    changed = labels.assign(
        label=np.where(labels["label"] == "Copepoda", "Rhizaria", labels["label"])
    )
    before = labels_fingerprint(url)
    _write_labels(world["root"] / "labels", changed.iloc[:-10])
    assert labels_fingerprint(url) != before
    third = run_steps(config, out=out, steps=["targets"], client=client)
    assert third.done == ["targets"]
    assert third.counts["objects_unlabelled"] == 10
    redone = pd.read_parquet(f"{out}/targets.parquet")
    assert "conc_Copepoda_per_l" not in redone.columns  # no object labelled Copepoda now
    assert redone["conc_Rhizaria_per_l"].sum() > targets["conc_Rhizaria_per_l"].sum()


def test_run_refuses_machine_labels_without_a_labels_table():
    with pytest.raises(ConfigError, match=r"object_targets.labels: 'machine' needs inputs.labels"):
        load_run_config({"inputs": {"objects": "ecotaxa"}, "object_targets": {"labels": "machine"}})


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"labels": "robot"}, r"object_targets.labels: 'robot'; valid: 'annotated'"),
        ({"min_prob": 2}, r"object_targets.min_prob: 2.0; expected a number in \[0, 1\]"),
    ],
    ids=["labels", "min_prob"],
)
def test_bad_object_target_label_options_name_the_key(section, match):
    with pytest.raises(ConfigError, match=match):
        load_run_config({"object_targets": section})


def test_unused_labels_table_warns():
    with pytest.warns(UserWarning, match=r"inputs.labels .* not used"):
        load_run_config({"inputs": {"objects": "ecotaxa", "labels": "x.parquet"}})


def test_labels_table_without_label_column_names_the_url_and_columns(world, client, tmp_path):
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"object_id": ["a"], "class": ["fiber"]}).to_parquet(bad)
    with pytest.raises(
        InputFormatError,
        match=r"bad.parquet: the labels table lacks \['label'\]; "
        r"found columns \['object_id', 'class'\]",
    ):
        run_steps(
            _run_config(world, str(bad)),
            out=str(tmp_path / "run"),
            steps=["targets"],
            client=client,
        )
    nowhere = str(tmp_path / "nowhere.parquet")
    with pytest.raises(InputFormatError, match=r"nowhere.parquet: the labels table does not"):
        run_steps(
            _run_config(world, nowhere), out=str(tmp_path / "run"), steps=["targets"], client=client
        )
    with pytest.raises(InputFormatError, match=r"nowhere.parquet: cannot read the labels"):
        read_labels(nowhere)
