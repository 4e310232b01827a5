"""Predictors: environment features on the output grid and their matchup to the targets.

:mod:`~pipeline.predictors.features` builds lazy layer means and derived variables
(speed, vorticity, layer mid-depth, season) on the environment's grid;
:mod:`~pipeline.predictors.grid` chooses the run's output grid and regrids each source
onto it; :mod:`~pipeline.predictors.environment` builds the features of several sources
(own grids, levels and time kinds) on that grid; :mod:`~pipeline.predictors.matchup`
attaches them to each target row at its month and cell, chunk by chunk.
"""

from __future__ import annotations

from pipeline.predictors.environment import build_features, time_kind_columns
from pipeline.predictors.features import (
    PredictorConfig,
    feature_names,
    features_from_means,
    layer_features,
    layer_means,
    ocean_mask,
    optional_features,
)
from pipeline.predictors.grid import (
    DEFAULT_BOUNDS,
    GridConfig,
    axis_step,
    check_coverage,
    grid_of,
    output_grid,
    regrid,
)
from pipeline.predictors.matchup import (
    MatchupResult,
    match_predictors,
)

__all__ = [
    "DEFAULT_BOUNDS",
    "GridConfig",
    "MatchupResult",
    "PredictorConfig",
    "axis_step",
    "build_features",
    "check_coverage",
    "feature_names",
    "features_from_means",
    "grid_of",
    "layer_features",
    "layer_means",
    "match_predictors",
    "ocean_mask",
    "optional_features",
    "output_grid",
    "regrid",
    "time_kind_columns",
]
