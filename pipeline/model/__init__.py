"""Model: spatial block cross-validation, multi-output xgboost.dask, baselines, skill.

- :mod:`~pipeline.model.split`, :mod:`~pipeline.model.basins`: spatial blocks or basins
  dealt into folds; :mod:`~pipeline.model.split_variants`: random and leave-one-basin-out
  splits; :mod:`~pipeline.model.splitters`: buffer, scikit-learn splitters;
- :mod:`~pipeline.model.train`: the training options, fit and predict on the cluster;
- :mod:`~pipeline.model.baselines`: per-layer climatology, one xgboost per target,
  random forest;
- :mod:`~pipeline.model.crossval`: the model and the baselines over folds, the final fit;
- :mod:`~pipeline.model.evaluate`: MSE, multivariate MSE, R², bias, conformal quantiles;
- :mod:`~pipeline.model.card`: the model card, saving and loading a model.
"""

from __future__ import annotations

from pipeline.model.baselines import (
    Climatology,
    PerTargetModel,
    RandomForestModel,
    fit_baselines,
)
from pipeline.model.basins import (
    ARCTIC_LAT,
    BASINS,
    SOUTHERN_LAT,
    basin_of,
)
from pipeline.model.card import (
    hash_config,
    hash_frame,
    load_model,
    model_card,
    save_model,
)
from pipeline.model.crossval import (
    CVResult,
    cross_validate,
)
from pipeline.model.evaluate import (
    interval_coverage,
    residual_quantiles,
    score,
    score_folds,
)
from pipeline.model.split import (
    SplitConfig,
    assign_blocks,
    assign_folds,
)
from pipeline.model.split_variants import random_folds
from pipeline.model.splitters import (
    RandomCV,
    SpatialBlockCV,
    buffer_mask,
)
from pipeline.model.train import (
    BASELINES,
    TrainConfig,
    fit_model,
    predict,
)

__all__ = [
    "ARCTIC_LAT",
    "BASELINES",
    "BASINS",
    "SOUTHERN_LAT",
    "CVResult",
    "Climatology",
    "PerTargetModel",
    "RandomCV",
    "RandomForestModel",
    "SpatialBlockCV",
    "SplitConfig",
    "TrainConfig",
    "assign_blocks",
    "assign_folds",
    "basin_of",
    "buffer_mask",
    "cross_validate",
    "fit_baselines",
    "fit_model",
    "hash_config",
    "hash_frame",
    "interval_coverage",
    "load_model",
    "model_card",
    "predict",
    "random_folds",
    "residual_quantiles",
    "save_model",
    "score",
    "score_folds",
]
