"""Training settings chosen from the data: what ``images train`` does when not told.

:func:`choose_settings` fills the options of
:class:`~pipeline.images.training_config.ImageTrainConfig` left at ``None`` from the labelled
images, and logs each choice at INFO; options given explicitly are kept.

- **canvas_px** (the constant-scale canvas): the median of the images' longer side (read
  from the headers of at most ``sample`` images), rounded up to a multiple of 16 and kept
  within [32, 512]: the smaller half of the objects keep their relative sizes, the larger
  ones are shrunk to fit (their size still goes in as the extra inputs). On the UVP6
  sample (median 94 px, p90 138 px) the 90th percentile (144) gave a CNN 0.744 accuracy /
  0.785 balanced where the hand-tuned 96 had given 0.800 / 0.835.
- **max_epoch_images** (images drawn per epoch, with class-balanced sampling): the
  training set's size, at least ``32 x batch_size``, so a short run on a small set
  still takes hundreds of steps (120 images at 64 a batch were 2 steps an epoch: 8
  epochs left the network at the majority class);
- **epochs**: about 64,000 draws in all, within [8, 80] epochs: 31 epochs of 2,048
  draws for 1,000 images (the hand-tuned benchmark's 80 epochs of 1,000 took 400 s on
  2 cores), 8 from 8,000 images on (4 million draws for 500,000 images). On the UVP6
  sample, 64,000 draws train in 256 s on 2 quiet cores and give 0.846 / 0.824
  (balanced accuracy / accuracy, end to end, ``benchmarks/results/recipes.json``);
  80,000 gave 0.859 / 0.832 read off the same network (``recipes_80k_draws.json``);
- **patience**: the epochs (no early stop; the best validation epoch is still kept): the
  one-cycle schedule only anneals at its end, and stopping it at epoch 27 of 39 on a
  150-image validation set kept a high-learning-rate snapshot (epoch 18).
- **width** (first-stage channels of the compact CNN): 32 up to 200,000 images, 16
  beyond (inference cost grows with the square of the width).

The head (``ImageTrainConfig.head``), measured on the real uvpec UVP6 vignettes
(stratified 80/20, seed 0; ``benchmarks/results/recipes.json``; balanced accuracy /
accuracy / calibration error on the 250 test images): handcrafted + xgboost (baseline)
0.770 / 0.748 / 0.098; logistic head on the handcrafted features 0.794 / 0.760 / 0.025;
the network alone (8 views) 0.823 / 0.784 / 0.068; logistic head on its embeddings +
handcrafted features 0.826 / 0.808 / 0.039; the mean of the network's and the
handcrafted head's probabilities 0.859 / 0.832 / 0.083, hence the default
``"handcrafted_mean"`` (the embedding head overfits: the network has seen the images
whose embeddings train it; the handcrafted head has not).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import fsspec
import numpy as np
from PIL import Image

__all__ = ["choose_settings", "longer_sides"]

_DRAWS = 64_000  # images drawn in a whole training of a small set (module docstring)

logger = logging.getLogger(__name__)


def longer_sides(
    urls: Sequence[str],
    *,
    sample: int = 2000,
    seed: int = 0,
    storage_options: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Longer side (px) of at most ``sample`` images drawn at random (headers only).

    Parameters
    ----------
    urls : sequence of str
    sample : int
        Most images read.
    seed : int
    storage_options : mapping, optional
        fsspec options of the images.

    Returns
    -------
    numpy.ndarray
        One value per image read (unreadable images are skipped).
    """
    idx = np.arange(len(urls))
    if idx.size > sample:
        idx = np.sort(np.random.default_rng(seed).choice(idx, sample, replace=False))
    sides = []
    for i in idx:
        try:
            opened = fsspec.open(urls[i], "rb", **dict(storage_options or {}))
            with opened as f, Image.open(f) as im:
                sides.append(max(im.size))
        except Exception as err:  # unreadable: quarantined later by the reader
            logger.debug("longer_sides: %s skipped (%s)", urls[i], err)
    return np.asarray(sides, dtype=np.int64)


def choose_settings(
    config: Any,
    *,
    n_images: int,
    sides: np.ndarray | None = None,
    fine_tuning: bool = False,
) -> Any:
    """Fill the options left at None from the data (module docstring); log each choice.

    Parameters
    ----------
    config : ImageTrainConfig
    n_images : int
        Labelled training images.
    sides : numpy.ndarray, optional
        Longer sides of (a sample of) the images (:func:`longer_sides`); needed for
        ``canvas_px`` unless fine-tuning (the parent's preprocessing is kept).
    fine_tuning : bool

    Returns
    -------
    ImageTrainConfig
        With every automatic option set.

    Examples
    --------
    >>> from pipeline.images.training_config import ImageTrainConfig
    >>> c = choose_settings(ImageTrainConfig(), n_images=1000, sides=np.array([50, 90, 138]))
    >>> c.epochs, c.patience, c.canvas_px, c.width, c.max_epoch_images
    (31, 31, 96, 32, 2048)
    >>> choose_settings(ImageTrainConfig(epochs=5), n_images=500_000, sides=np.array([60])).epochs
    5
    """
    chosen: dict[str, Any] = {}
    if config.max_epoch_images is None:
        chosen["max_epoch_images"] = max(n_images, 32 * config.batch_size)
    draws = chosen.get("max_epoch_images", config.max_epoch_images)
    if config.epochs is None:
        chosen["epochs"] = int(np.clip(round(_DRAWS / draws), 8, 80))
    epochs = chosen.get("epochs", config.epochs)
    if config.patience is None:  # no early stop: the one-cycle schedule ends annealed
        chosen["patience"] = epochs
    if config.width is None:
        chosen["width"] = 32 if n_images <= 200_000 else 16
    if config.canvas_px is None:
        if fine_tuning or sides is None or len(sides) == 0:
            chosen["canvas_px"] = 128
        else:
            p50 = float(np.percentile(sides, 50))
            chosen["canvas_px"] = int(min(512, max(32, 16 * math.ceil(p50 / 16))))
    if chosen:
        logger.info(
            "images train: settings from the data (%d images%s): %s",
            n_images,
            f", median longer side {np.percentile(sides, 50):.0f} px"
            if sides is not None and len(sides)
            else "",
            ", ".join(f"{k}={v}" for k, v in chosen.items()),
        )
    return replace(config, **chosen)
