"""Targets: per (cast, layer) concentrations per size class and per category, carbon flux.

:mod:`~pipeline.targets.particles` turns EcoPart particles into volume-weighted
concentrations per depth layer and size class and the Guidi flux (the class merge and
the flux as functions of their own, which the demo's noise ceiling uses too), with the
transform used for training and its inverse; :mod:`~pipeline.targets.objects` counts
EcoTaxa objects per category in the same casts and layers; :mod:`~pipeline.targets.nets`
gives net samples (ZooScan) one row each, in individuals per m³.
"""

from __future__ import annotations

from pipeline.targets.nets import build_net_targets
from pipeline.targets.objects import (
    ObjectTargetConfig,
    ObjectTargetsResult,
    build_object_targets,
    category_column,
)
from pipeline.targets.particles import (
    DEFAULT_LAYERS,
    Layer,
    TargetConfig,
    TargetsResult,
    build_targets,
    class_groups,
    flux_diameters_mm,
    guidi_flux,
    inverse_transform,
    particle_classes,
    target_columns,
    transform,
)

__all__ = [
    "DEFAULT_LAYERS",
    "Layer",
    "ObjectTargetConfig",
    "ObjectTargetsResult",
    "TargetConfig",
    "TargetsResult",
    "build_net_targets",
    "build_object_targets",
    "build_targets",
    "category_column",
    "class_groups",
    "flux_diameters_mm",
    "guidi_flux",
    "inverse_transform",
    "particle_classes",
    "target_columns",
    "transform",
]
