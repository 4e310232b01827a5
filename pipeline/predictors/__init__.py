"""Predictors: layer-mean environment features on the grid and their matchup to the targets.

:mod:`~pipeline.predictors.features` builds lazy layer means and derived variables
(speed, vorticity, layer mid-depth, season) on the environment's grid;
:mod:`~pipeline.predictors.matchup` attaches them to each target row at its month and
cell, chunk by chunk.
"""

from __future__ import annotations

from pipeline.predictors.features import (
    PredictorConfig,
    feature_names,
    layer_features,
    ocean_mask,
)
from pipeline.predictors.matchup import (
    MatchupResult,
    match_predictors,
)

__all__ = [
    "MatchupResult",
    "PredictorConfig",
    "feature_names",
    "layer_features",
    "match_predictors",
    "ocean_mask",
]
