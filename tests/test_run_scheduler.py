"""A run submitted to a scheduler and 2 workers started as separate processes on 127.0.0.1.

The scheduler and workers are the ``dask scheduler`` / ``dask worker`` commands, reached
through a cluster file of type ``scheduler`` (as ``clusters/scheduler.yaml``); the outputs
must equal those of a LocalCluster run of the same run file.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xarray as xr
from distributed import Client

from pipeline.clusters import cluster_client
from pipeline.demo import generate_demo_world
from pipeline.run import run_steps
from pipeline.runconfig import load_run_config

STEPS = ["targets", "matchup", "train", "fields"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dask_command() -> list[str]:
    exe = shutil.which("dask", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "dask"]


@pytest.fixture(scope="module")
def scheduler_file(tmp_path_factory):
    base = tmp_path_factory.mktemp("sched")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ)
    procs = [
        subprocess.Popen(
            [*_dask_command(), "scheduler", "--host", "127.0.0.1", "--port", str(port),
             "--dashboard-address", ":0"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    ]
    try:
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [*_dask_command(), "worker", address, "--nthreads", "1", "--nworkers", "1",
                     "--host", "127.0.0.1", "--memory-limit", "4GiB"],
                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        path = base / "cluster.yaml"
        path.write_text(f"cluster:\n  type: scheduler\n  address: {address}\n")
        yield path
    finally:
        for proc in reversed(procs):
            proc.terminate()
        deadline = time.monotonic() + 30
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def run_config(tmp_path_factory):
    world = generate_demo_world(
        str(tmp_path_factory.mktemp("schedworld") / "world"),
        resolution=6.0, n_profiles=60, n_images=0, seed=9,
    )  # fmt: skip
    return load_run_config({
        "inputs": {"catalog": "demo", "params": {"root": world.root}},
        "split": {"n_folds": 3, "block_deg": 20},
        "train": {"n_estimators": 60, "baselines": ["climatology"], "early_stopping_rounds": 10},
    })  # fmt: skip


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
