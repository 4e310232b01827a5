"""Runs: the run file and its steps, each reading and writing under one output store."""

from __future__ import annotations

from pipeline.run.config import (
    InputsConfig,
    ReportConfig,
    RunConfig,
    config_hash,
    load_run_config,
    run_config_to_dict,
)
from pipeline.run.context import StepContext
from pipeline.run.steps import (
    STEPS,
    RunSummary,
    run_steps,
)
from pipeline.run.train import train_and_evaluate

__all__ = [
    "STEPS",
    "InputsConfig",
    "ReportConfig",
    "RunConfig",
    "RunSummary",
    "StepContext",
    "config_hash",
    "load_run_config",
    "run_config_to_dict",
    "run_steps",
    "train_and_evaluate",
]
