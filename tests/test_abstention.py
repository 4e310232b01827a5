"""Abstention: per-class thresholds for a target precision, ``unassigned`` labels, and
``unassigned`` as a category of the object targets with its share."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from pipeline.errors import ConfigError
from pipeline.images.abstention import (
    UNASSIGNED,
    abstention_scores,
    abstention_thresholds,
    assign_labels,
)
from pipeline.images.labels import apply_labels
from pipeline.targets.objects import ObjectTargetConfig, build_object_targets


def _validation(seed: int = 0, n: int = 600):
    """Probabilities whose top-1 is right with probability = its value (calibrated)."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n)
    top = rng.uniform(0.4, 1.0, n)
    right = rng.uniform(size=n) < top
    pred = np.where(right, truth, (truth + rng.integers(1, 3, n)) % 3)
    probs = np.full((n, 3), 0.0)
    probs[np.arange(n), pred] = top
    for k in range(3):  # the rest spread over the two others
        probs[:, k] += np.where(pred == k, 0.0, (1 - top) / 2)
    return probs, truth


def test_thresholds_reach_the_target_precision_on_the_validation_data():
    probs, truth = _validation()
    res = abstention_thresholds(probs, truth, ["a", "b", "c"], target_precision=0.9)
    assert res["precision_assigned"] >= 0.9
    for name, stats in res["per_class"].items():
        assert stats["precision_kept"] >= 0.9, name
        assert 0.6 < res["thresholds"][name] < 1.0  # calibrated: about 0.8, not 0
    plain = (probs.argmax(1) == truth).mean()
    assert plain < 0.8  # without abstention the labels are far less precise
    assert 0.3 < res["share_unassigned"] < 0.9


def test_the_lowest_threshold_keeping_the_precision_is_chosen():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.4, 0.6]])
    res = abstention_thresholds(
        probs, [0, 0, 0, 1, 1], ["a", "b"], target_precision=0.75, min_support=1
    )
    # a: precision at 0.9, 0.8, 0.7, 0.6 is 1, 1, 1, 0.75 -> 0.6 keeps all four
    assert res["thresholds"]["a"] == 0.6
    res = abstention_thresholds(
        probs, [0, 0, 0, 1, 1], ["a", "b"], target_precision=0.8, min_support=1
    )
    assert res["thresholds"]["a"] == 0.7


def test_a_class_that_never_reaches_the_target_is_always_unassigned():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8]])
    res = abstention_thresholds(probs, [1, 1, 1, 1], ["a", "b"], min_support=1)
    assert res["thresholds"]["a"] == 1.0
    label, predicted, _ = assign_labels(probs, ["a", "b"], res["thresholds"])
    assert label.tolist() == [UNASSIGNED, UNASSIGNED, "b", "b"]
    assert predicted.tolist() == ["a", "a", "b", "b"]


def test_classes_with_few_predictions_take_the_pooled_threshold():
    probs, truth = _validation()
    probs = np.hstack([probs, np.zeros((len(probs), 1))])
    probs[:3] = [0, 0, 0.05, 0.95]  # class d predicted thrice, right once
    truth = truth.copy()
    truth[:3] = [3, 0, 0]
    res = abstention_thresholds(probs, truth, ["a", "b", "c", "d"], min_support=10)
    pooled = abstention_thresholds(probs, truth, ["a", "b", "c", "d"], min_support=10**6)
    assert res["thresholds"]["d"] == pooled["thresholds"]["a"]


def test_scores_on_other_data_count_unassigned_and_precision():
    s = abstention_scores(
        [[0.9, 0.1], [0.55, 0.45], [0.2, 0.8]], [0, 1, 1], ["a", "b"], {"a": 0.6, "b": 0.6}
    )
    assert s["share_unassigned"] == pytest.approx(1 / 3)
    assert s["precision_assigned"] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_precision": 0.0}, "images.train.target_precision"),
        ({"target_precision": 1.5}, "images.train.target_precision"),
        ({"min_support": 0}, "images.train.min_support"),
    ],
    ids=["zero", "above_one", "support"],
)
def test_bad_abstention_options_name_the_key(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        abstention_thresholds(np.eye(2), [0, 1], ["a", "b"], **kwargs)


def test_apply_labels_turns_unassigned_labels_into_the_unassigned_category():
    objects = pd.DataFrame(
        {"object_id": list("abc"), "status": ["P", "P", "V"], "category": ["x", "y", "z"]}
    )
    labels = pd.DataFrame(
        {"object_id": list("abc"), "label": ["fiber", UNASSIGNED, UNASSIGNED], "prob": 0.5}
    )
    out = apply_labels(objects, labels, use="human_first")
    assert out["category"].tolist() == ["fiber", UNASSIGNED, "z"]
    assert out["status"].tolist() == ["P", "P", "V"]
    assert out["label_source"].tolist() == ["machine", UNASSIGNED, "human"]


def _objects() -> pd.DataFrame:
    rows = [
        ("p1", "fiber", "P", 10.0),
        ("p1", "fiber", "P", 20.0),
        ("p1", UNASSIGNED, "P", 30.0),
        ("p1", "Copepoda", "V", 150.0),
        ("p2", UNASSIGNED, "P", 10.0),
        ("p2", UNASSIGNED, "P", 12.0),
        ("p2", "Copepoda", "P", 14.0),
        ("p2", "Copepoda", "P", 16.0),
    ]
    frame = pd.DataFrame(rows, columns=["sample_id", "category", "status", "depth_min_m"])
    frame["subsample_fraction"] = 1.0
    return frame


SAMPLED = pd.DataFrame(
    {
        "id": ["p1", "p1", "p2", "p2"],
        "layer": ["0-100m", "100-500m", "0-100m", "100-500m"],
        "volume_l": [100.0, 400.0, 50.0, 400.0],
    }
)


def test_object_targets_count_unassigned_as_a_category_with_its_share():
    res = build_object_targets(_objects(), SAMPLED)
    assert "conc_unassigned_per_l" in res.targets_columns
    t = res.targets.set_index(["id", "layer"])
    assert t.loc[("p1", "0-100m"), "conc_unassigned_per_l"] == pytest.approx(0.01)
    assert t.loc[("p2", "0-100m"), "conc_unassigned_per_l"] == pytest.approx(0.04)
    c = res.counts.set_index(["id", "layer"])
    assert c.loc[("p1", "0-100m"), "share_unassigned"] == pytest.approx(1 / 3)
    assert c.loc[("p2", "0-100m"), "share_unassigned"] == pytest.approx(0.5)
    assert c.loc[("p1", "100-500m"), "share_unassigned"] == 0.0
    assert np.isnan(c.loc[("p2", "100-500m"), "share_unassigned"])  # nothing counted
    assert res.unassigned_share == pytest.approx(3 / 8)


def test_unassigned_is_counted_even_when_the_categories_list_others():
    res = build_object_targets(
        _objects(), SAMPLED, config=ObjectTargetConfig(categories=("fiber",), labels="machine")
    )
    assert res.targets_columns == ["conc_fiber_per_l", "conc_unassigned_per_l"]
    assert res.unassigned_share == pytest.approx(3 / 5)
    off = build_object_targets(
        _objects(),
        SAMPLED,
        config=ObjectTargetConfig(categories=("fiber",), labels="machine", count_unassigned=False),
    )
    assert off.targets_columns == ["conc_fiber_per_l"]
    assert off.unassigned_share is None
    human = build_object_targets(  # human categories: no machine abstention to count
        _objects(), SAMPLED, config=ObjectTargetConfig(categories=("fiber",))
    )
    assert human.targets_columns == ["conc_fiber_per_l"]


def test_unassigned_share_of_dask_inputs_is_lazy_and_equal_to_pandas():
    res = build_object_targets(dd.from_pandas(_objects(), npartitions=3), SAMPLED)
    assert float(res.unassigned_share.compute()) == pytest.approx(3 / 8)
    counts = res.counts.compute().sort_values(["id", "layer"])
    assert counts["share_unassigned"].round(6).fillna(-1).tolist() == [
        round(1 / 3, 6),
        0.0,
        0.5,
        -1.0,
    ]
