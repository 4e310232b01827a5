"""Morphological particle types: PCA + k-means on the demo world's particles."""

from __future__ import annotations

import pickle
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import adjusted_rand_score

from pipeline.demo import generate_demo_world
from pipeline.demo import truth as demo_truth
from pipeline.errors import ConfigError, InputFormatError
from pipeline.images.morphology import (
    MorphologyConfig,
    assign_types,
    fit_types,
    load_model,
    save_model,
)
from pipeline.images.morphology_describe import describe_types, plot_type_plate
from pipeline.sources.ecotaxa import read_ecotaxa


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("morphology_world")
    return generate_demo_world(
        # the simple world: its kinds are drawn without hidden drivers
        str(root),
        resolution=5.0,
        n_profiles=24,
        n_images=2000,
        seed=1,
        world="simple",
    )


@pytest.fixture(scope="module")
def lazy_objects(world) -> dd.DataFrame:
    return read_ecotaxa(f"{world.paths['ecotaxa']}/ecotaxa_export_*.tsv").accepted


@pytest.fixture(scope="module")
def objects(lazy_objects) -> pd.DataFrame:
    return lazy_objects.compute().reset_index(drop=True)


@pytest.fixture(scope="module")
def kind(world) -> pd.Series:
    truth = pd.read_parquet(world.paths["truth_objects"])
    return truth.set_index("object_id")["kind"]


@pytest.fixture(scope="module")
def model(lazy_objects):
    return fit_types(lazy_objects)  # the reader's lazy table, default config


@pytest.fixture(scope="module")
def labels(objects, model) -> pd.DataFrame:
    return assign_types(objects, model)


def _ari(labels: pd.DataFrame, kind: pd.Series) -> float:
    typed = labels.dropna(subset=["label"])
    return adjusted_rand_score(kind.loc[typed["object_id"]].to_numpy(), typed["label"].to_numpy())


def test_types_recover_the_true_particle_types(model, labels, objects, kind):
    particles = objects[objects["hierarchy"].str.startswith("not-living")]
    particles = particles[particles["status"].isin(["V", "P"])]
    assert len(labels) == len(particles) == model.n_fit
    assert labels["label"].notna().all()
    assert model.labels == ("type_1", "type_2", "type_3", "type_4")
    assert sum(model.counts) == model.n_fit
    assert labels["label"].value_counts().reindex(model.labels).tolist() == list(model.counts)
    # the annotated hierarchy has human errors: a few plankters sit among the particles
    assert kind.loc[labels["object_id"]].isin(demo_truth.TYPES).mean() > 0.97
    assert _ari(labels, kind) > 0.95  # measured 0.989
    # size features are not among the defaults; grey levels are log-transformed, skew not
    assert "area" not in model.features
    assert {"mean", "circ", "skew"} <= set(model.features)
    logged = dict(zip(model.features, model.log, strict=True))
    assert logged["mean"]
    assert not logged["skew"]
    assert model.explained_variance_ratio.sum() >= 0.9
    assert model.components.shape == (len(model.explained_variance_ratio), len(model.features))
    assert (labels["distance"] >= 0).all()


def test_types_are_numbered_by_mean_log_area(labels, objects):
    area = objects.set_index("object_id").loc[labels["object_id"], "area"].to_numpy()
    means = pd.Series(np.log1p(area)).groupby(labels["label"].to_numpy()).mean()
    assert means.index.tolist() == ["type_1", "type_2", "type_3", "type_4"]
    assert means.is_monotonic_increasing


def test_same_config_gives_the_same_labels(objects, model, labels):
    again = fit_types(objects)  # pandas input this time: split into partitions, same path
    np.testing.assert_allclose(again.centres, model.centres, atol=1e-9)
    pd.testing.assert_frame_equal(assign_types(objects, again), labels)


def test_dask_input_in_several_partitions_gives_the_same_labels(objects, labels):
    lazy = dd.from_pandas(objects, npartitions=4, sort=False)
    other = fit_types(lazy, config=MorphologyConfig(random_state=7))
    out = assign_types(lazy, other)
    assert isinstance(out, dd.DataFrame)
    assert out.npartitions == 4
    got = out.compute().reset_index(drop=True)
    assert got["object_id"].tolist() == labels["object_id"].tolist()
    # another seed and partitioning, the same types under the same names
    assert (got["label"] == labels["label"]).mean() > 0.995


def test_scalable_kmeans_init_types_every_particle(objects, labels, kind):
    other = fit_types(objects, config=MorphologyConfig(init="k-means||", n_init=1))
    out = assign_types(objects, other)
    assert out["label"].notna().all()
    assert sorted(out["label"].unique()) == list(other.labels)
    # k-means|| (unweighted candidates) can stop in a worse partition than the default
    assert _ari(out, kind) > 0.5


def test_model_json_and_pickle_round_trips_give_identical_labels(model, objects, labels, tmp_path):
    url = str(tmp_path / "morphology.json")
    save_model(model, url)
    loaded = load_model(url)
    assert loaded.features == model.features
    assert loaded.labels == model.labels
    pd.testing.assert_frame_equal(assign_types(objects, loaded), labels)
    pd.testing.assert_frame_equal(assign_types(objects, pickle.loads(pickle.dumps(model))), labels)


def test_load_model_names_the_file_of_a_foreign_json(tmp_path):
    path = tmp_path / "other.json"
    path.write_text('{"format": "something/1"}')
    with pytest.raises(InputFormatError, match=r"other\.json.*oceanfields\.morphology/1"):
        load_model(str(path))


def test_rows_with_missing_features_get_no_type_and_are_counted(objects, model):
    broken = objects.copy()
    particles = np.flatnonzero(
        broken["hierarchy"].str.startswith("not-living") & broken["status"].isin(["V", "P"])
    )
    broken.loc[particles[:7], "mean"] = np.nan
    broken.loc[particles[7:10], "circ"] = np.inf
    fitted = fit_types(broken, config=MorphologyConfig(n_init=1))
    assert fitted.n_missing == 10
    assert fitted.n_fit == model.n_fit - 10
    out = assign_types(broken, fitted)
    missing = out["object_id"].isin(broken.loc[particles[:10], "object_id"])
    assert out.loc[missing, "label"].isna().all()
    assert out.loc[missing, "distance"].isna().all()
    assert out.loc[~missing, "label"].notna().all()
    assert missing.sum() == 10


def test_description_has_one_row_per_type_and_the_means_of_its_objects(
    model, lazy_objects, objects, labels
):
    lazy_labels = assign_types(lazy_objects, model)
    table = describe_types(lazy_objects, lazy_labels, model)  # partition-wise, no shuffle
    assert table["label"].tolist() == list(model.labels)
    assert table["count"].tolist() == list(model.counts)
    assert table["count"].sum() == labels["label"].notna().sum()
    assert table["share"].sum() == pytest.approx(1.0)
    joined = labels.merge(objects, on="object_id")
    expected = joined.groupby("label")[["mean", "circ", "skew"]].mean()
    got = table.set_index("label")[["mean", "circ", "skew"]]
    pd.testing.assert_frame_equal(got, expected.loc[got.index], check_names=False)
    # pandas inputs and a dask table whose partitions differ from the labels' agree
    pd.testing.assert_frame_equal(describe_types(objects, labels, model), table)
    resplit = dd.from_pandas(objects, npartitions=3, sort=False)
    pd.testing.assert_frame_equal(describe_types(resplit, lazy_labels, model), table)


def test_plate_shows_a_row_per_type_and_skips_images_that_fail(objects, labels, tmp_path):
    damaged = objects.copy()
    bad = damaged.index[::3]
    damaged.loc[bad, "image"] = [str(tmp_path / f"missing_{i}.png") for i in range(len(bad))]
    Path(damaged.loc[bad[0], "image"]).write_bytes(b"not a png")
    out = tmp_path / "plate.png"
    shown = plot_type_plate(damaged, labels, str(out), per_type=5, seed=3)
    assert list(shown) == ["type_1", "type_2", "type_3", "type_4"]
    assert all(len(ids) == 5 for ids in shown.values())
    good = set(damaged["object_id"].drop(index=bad))
    assert {i for ids in shown.values() for i in ids} <= good
    kinds = labels.set_index("object_id")["label"]
    assert all((kinds.loc[ids] == name).all() for name, ids in shown.items())
    with Image.open(out) as img:
        assert img.format == "PNG"
        assert img.size == (700, 480)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_types": 1}, "morphology.n_types: 1"),
        ({"n_components": 0}, "morphology.n_components"),
        ({"explained_variance": 1.5}, "morphology.explained_variance"),
        ({"features": "area"}, "morphology.features"),
        ({"statuses": ("V", "V")}, "morphology.statuses"),
        ({"init": "random"}, "morphology.init: 'random'; valid: 'sample', 'k-means||'"),
        ({"n_init": 0}, "morphology.n_init: 0; expected an integer >= 1"),
    ],
    ids=[
        "one-type",
        "no-component",
        "variance-above-one",
        "features-string",
        "repeated-status",
        "unknown-init",
        "no-init",
    ],
)
def test_bad_config_raises_naming_the_key(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        MorphologyConfig(**kwargs)


def test_fit_names_unknown_features_and_missing_selection_columns(objects):
    with pytest.raises(ConfigError, match=r"morphology.features: \['nope'\] not in"):
        fit_types(objects, config=MorphologyConfig(features=("area", "nope")))
    with pytest.raises(ConfigError, match=r"morphology.n_components: 5 > the 2 features"):
        fit_types(objects, config=MorphologyConfig(features=("area", "mean"), n_components=5))
    with pytest.raises(ConfigError, match=r"morphology.hierarchy_prefix: .*no 'hierarchy'"):
        fit_types(objects.drop(columns="hierarchy"))
