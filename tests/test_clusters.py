"""Cluster files become a real dask.distributed Client; bad files name the key."""

from __future__ import annotations

import os

import dask.array as da
import pytest

from pipeline.clusters import LocalConfig, SchedulerConfig, cluster_client, load_cluster_config
from pipeline.errors import ConfigError
from tests.conftest import ROOT


@pytest.mark.parametrize("name", ["local.yaml", "scheduler.yaml"])
def test_shipped_cluster_files_are_valid(name):
    config = load_cluster_config(ROOT / "clusters" / name)
    assert isinstance(config, LocalConfig | SchedulerConfig)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("cluster:\n  type: local\n  n_wrkers: 2\n", r"bad\.yaml: cluster\.n_wrkers: unknown key"),
        ("cluster:\n  type: yarn\n", r"cluster\.type: unknown type 'yarn'; valid: local, sched"),
        ("workers: 2\n", "expected a top-level 'cluster' mapping"),
        ("cluster: [1, 2\n", "not valid YAML"),
        ("cluster:\n  type: scheduler\n", "give 'address' or 'scheduler_file'"),
    ],
    ids=["typo", "unknown-type", "no-cluster-key", "bad-yaml", "scheduler-without-address"],
)
def test_bad_cluster_file_names_file_and_key(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_cluster_config(path)


def test_local_cluster_runs_workers_in_separate_processes():
    config = {"cluster": {"type": "local", "n_workers": 2, "memory_limit": "1GiB"}}
    with cluster_client(config) as client:
        pids = set(client.run(os.getpid).values())
        assert len(pids) == 2
        assert os.getpid() not in pids
        assert client.dashboard_link.startswith("http://127.0.0.1:")
        total = da.ones((1000, 1000), chunks=250).sum().compute()
    assert total == 1_000_000
