"""Settings from the data, and the default classifier against the classical baseline.

The default ``images train`` (compact CNN, then a logistic head on its embeddings joined
to the handcrafted features) must beat handcrafted features + xgboost (the UVP6
embedded classifier's approach) on the same stratified 80/20 split of the real UVP6
vignettes, here on a small budget (6 epochs); the full budget is in
``benchmarks/bench_recipes.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.images.dataset import image_table
from pipeline.images.evaluation import classification_metrics, stratified_holdout
from pipeline.images.gbt import GBTConfig, fit_gbt
from pipeline.images.handcrafted import FEATURE_NAMES, features_from_urls
from pipeline.images.recipe import choose_settings, longer_sides
from pipeline.images.training import train_classifier
from pipeline.images.training_config import ImageTrainConfig


@pytest.fixture(scope="module")
def uvp6(shared_data):
    return shared_data / "uvpec_uvp6_labelled_images" / "img_sample"


def test_settings_follow_the_set_size_and_explicit_options_win():
    small = choose_settings(ImageTrainConfig(), n_images=120, sides=np.array([40, 60, 300]))
    assert small.max_epoch_images == 2048  # 32 steps an epoch, not 2
    assert small.epochs == 31  # 64,000 draws of 2,048
    large = choose_settings(ImageTrainConfig(), n_images=500_000, sides=np.array([60]))
    assert (large.epochs, large.max_epoch_images, large.width) == (8, 500_000, 16)
    mine = choose_settings(
        ImageTrainConfig(epochs=3, width=8, canvas_px=64), n_images=500_000, sides=None
    )
    assert (mine.epochs, mine.width, mine.canvas_px) == (3, 8, 64)
    assert small.canvas_px == 64  # median of (40, 60, 300) is 60 -> 64
    assert small.patience == small.epochs  # no early stop of the one-cycle schedule


def test_the_canvas_follows_the_real_vignettes_longer_side(uvp6):
    table = image_table(str(uvp6))
    sides = longer_sides(table["image"].tolist(), sample=300)
    assert len(sides) == 300
    cfg = choose_settings(ImageTrainConfig(), n_images=1000, sides=sides)
    assert 80 <= cfg.canvas_px <= 112  # the sample's median longer side is 94 px


@pytest.mark.slow
def test_the_default_beats_handcrafted_gbt_on_the_same_split_on_a_small_budget(uvp6):
    table = image_table(str(uvp6))
    cats = table["category"].tolist()
    train, test = stratified_holdout(cats, test_fraction=0.2, seed=0)
    classes = sorted(set(cats))
    truth = [cats[i] for i in test]
    feats = features_from_urls(table["image"].tolist())[list(FEATURE_NAMES)]
    gbt = fit_gbt(feats.iloc[train], [cats[i] for i in train], config=GBTConfig(n_jobs=1))
    base = classification_metrics(truth, list(gbt.predict(feats.iloc[test])[0]), classes)
    res = train_classifier(
        table.iloc[train], config=ImageTrainConfig(epochs=6, threads=2), test=table.iloc[test]
    )
    new = res.metrics["test"]
    assert res.model.head is not None
    # balanced accuracy is the figure that matters (accuracy rewards the detritus class);
    # at this budget accuracy is about the baseline's (0.740 vs 0.748 seen)
    assert new["balanced_accuracy"] > base["balanced_accuracy"]
    assert new["calibration_error"] < 0.15
