"""One small demo run (targets to fields, with EcoTaxa objects) shared by the products tests.

:func:`demo_run` makes it once per test session (about 30-45 s on 2 busy cores): a 15°
demo world of 40 UVP casts and 200 EcoTaxa objects, the year-1 chain up to the fields
and their catalogue entries (no report: ``tests/test_report.py`` tests it), with two
morphological categories as targets and a fast training, on an in-process Dask
cluster. Test modules wrap it in a session-scoped fixture; the run is cached here, so
every module of a session shares one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_CACHE: dict[str, Path] = {}
STEPS = ("targets", "matchup", "train", "fields")


def demo_run(tmp_path_factory: Any) -> Path:
    """Return the output folder of the shared demo run, making it on first use."""
    if "run" in _CACHE:
        return _CACHE["run"]
    from distributed import Client

    from pipeline.demo import generate_demo_world
    from pipeline.run.config import load_run_config
    from pipeline.run.steps import run_steps

    base = tmp_path_factory.mktemp("products")
    world = generate_demo_world(
        # the simple world: product files, not skill (skill: test_run_skill.py)
        str(base / "world"),
        resolution=15.0,
        n_profiles=40,
        n_images=200,
        seed=3,
        world="simple",
    )
    doc = {
        "inputs": {
            "catalog": "demo",
            "params": {"root": str(world.root)},
            "particles": "ecopart_detailed",
            "environment": "environment",
            "objects": "ecotaxa",
        },
        "object_targets": {"categories": ["dark_aggregate", "fiber"]},
        "split": {"block_deg": 30.0, "n_folds": 3, "seed": 0},
        "train": {"n_estimators": 20, "baselines": [], "early_stopping_rounds": 5},
        "product": {"license": "CC-BY-4.0", "creator_name": "oceanfields test suite"},
    }
    out = base / "run"
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as c:
        # no report step: the report is tested on its own (tests/test_report.py)
        run_steps(load_run_config(doc), out=str(out), client=c, steps=STEPS)
    _CACHE["run"] = out
    return out
