"""A run submitted to a scheduler and 2 workers started as separate processes on 127.0.0.1.

The scheduler and workers are the ``dask scheduler`` / ``dask worker`` commands, reached
through a cluster file of type ``scheduler`` (as ``clusters/scheduler.yaml``); the outputs
must equal those of a LocalCluster run of the same run file.
"""

from __future__ import annotations

import json
import os

import pytest
import xarray as xr

from pipeline.clusters.client import cluster_client
from pipeline.demo import generate_demo_world
from pipeline.run.config import load_run_config
from pipeline.run.steps import run_steps

pytestmark = pytest.mark.slow  # whole chains on demo worlds and clusters

STEPS = ["targets", "matchup", "train", "fields"]


@pytest.fixture(scope="module")
def run_config(tmp_path_factory):
    world = generate_demo_world(
        # the simple world: scheduling, not skill (skill: test_run_skill.py)
        str(tmp_path_factory.mktemp("schedworld") / "world"),
        resolution=6.0,
        n_profiles=60,
        n_images=0,
        seed=9,
        world="simple",
    )
    return load_run_config(
        {
            "inputs": {"catalog": "demo", "params": {"root": world.root}},
            "split": {"n_folds": 3, "block_deg": 20, "variants": []},
            "train": {
                "n_estimators": 60,
                "baselines": ["climatology"],
                "early_stopping_rounds": 10,
                "min_rows_per_worker": 1,  # both workers in every fit
            },
        }
    )


def test_a_run_on_separate_scheduler_and_worker_processes_equals_a_local_run(
    scheduler_file, run_config, tmp_path
):
    with cluster_client(scheduler_file) as client:
        info = client.scheduler_info()
        assert len(info["workers"]) == 2
        pids = set(client.run(os.getpid).values())
        assert os.getpid() not in pids
        assert len(pids) == 2
        remote = run_steps(run_config, out=str(tmp_path / "remote"), client=client, steps=STEPS)
    local_cluster = {"cluster": {"type": "local", "n_workers": 2, "threads_per_worker": 1}}
    with cluster_client(local_cluster) as client:
        local = run_steps(run_config, out=str(tmp_path / "local"), client=client, steps=STEPS)
    assert remote.done == local.done == STEPS
    a = json.loads((tmp_path / "remote" / "metrics.json").read_text())
    b = json.loads((tmp_path / "local" / "metrics.json").read_text())
    assert a["model"]["test"] == b["model"]["test"]
    assert a["model"]["cv"] == b["model"]["cv"]
    fa = xr.open_zarr(tmp_path / "remote" / "fields.zarr", consolidated=False).load()
    fb = xr.open_zarr(tmp_path / "local" / "fields.zarr", consolidated=False).load()
    xr.testing.assert_identical(fa.drop_attrs(), fb.drop_attrs())
