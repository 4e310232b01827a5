"""The run file of the year-1 chain on a demo world, shared by the chain tests."""

from __future__ import annotations

from pipeline.demo.products import DEMO_SOURCES
from pipeline.run.config import RunConfig, load_run_config


def chain_config(root, **sections) -> RunConfig:
    """The chain's run config on the demo world at ``root``; ``sections`` update it."""
    doc = {
        "inputs": {
            "catalog": "demo",
            "params": {"root": str(root)},
            "particles": "ecopart_detailed",
            # the demo's five products on their own grids, onto the physics grid
            "environment": list(DEMO_SOURCES),
            "truth": "truth_profiles",
        },
        "split": {"block_deg": 15.0, "n_folds": 4, "seed": 0},
        "train": {"rf_n_estimators": 150, "learning_rate": 0.1},  # half the rounds of 0.05
    }
    for key, value in sections.items():
        doc[key] = {**doc.get(key, {}), **value}
    return load_run_config(doc)
