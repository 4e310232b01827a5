"""Cluster files become a real dask.distributed Client; bad files name the key."""

from __future__ import annotations

import os

import dask.array as da
import pytest

from pipeline.clusters.client import cluster_client
from pipeline.clusters.config import (
    GatewayConfig,
    KubernetesConfig,
    LocalConfig,
    SchedulerConfig,
    SlurmConfig,
    load_cluster_config,
)
from pipeline.clusters.deploy import _require
from pipeline.errors import ConfigError
from tests.conftest import ROOT

SHIPPED = {
    "local.yaml": LocalConfig,
    "scheduler.yaml": SchedulerConfig,
    "kubernetes.yaml": KubernetesConfig,
    "slurm.yaml": SlurmConfig,
    "gateway.yaml": GatewayConfig,
}


def test_every_file_in_clusters_is_a_known_shipped_file():
    assert sorted(p.name for p in (ROOT / "clusters").glob("*.yaml")) == sorted(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_cluster_files_are_valid(name):
    config = load_cluster_config(ROOT / "clusters" / name)
    assert type(config) is SHIPPED[name]


def test_kubernetes_file_reads_nested_options_into_frozen_configs():
    config = load_cluster_config(ROOT / "clusters" / "kubernetes.yaml")
    assert config.resources.limits.memory == "8Gi"
    assert config.resources.as_dict() == {
        "requests": {"cpu": "2", "memory": "8Gi"},
        "limits": {"cpu": "2", "memory": "8Gi"},
    }
    assert config.gpu_workers.gpus_per_worker == 1
    assert config.gpu_workers.resources.as_dict(gpus=2)["limits"]["nvidia.com/gpu"] == "2"
    assert (config.adaptive.minimum, config.adaptive.maximum) == (2, 20)
    assert dict(config.env)["OMP_NUM_THREADS"] == "1"
    with pytest.raises(AttributeError):
        config.n_workers = 3  # frozen


K8S = "cluster:\n  type: kubernetes\n  image: registry/oceanfields:1\n"
SLURM = "cluster:\n  type: slurm\n"
GATEWAY = "cluster:\n  type: gateway\n  address: https://gateway.example.org\n"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("cluster:\n  type: kubernetes\n  n_workers: 2\n", r"cluster\.image: required key"),
        (K8S + "  n_workers: -1\n", r"cluster\.n_workers: -1; expected an integer >= 0"),
        (K8S + "  n_workers: two\n", r"cluster\.n_workers: 'two' is not int"),
        (K8S + "  n_wrkers: 2\n", r"cluster\.n_wrkers: unknown key; valid: adaptive, env, "),
        (
            K8S + "  resources:\n    requests: {cpu: 2, memroy: 8Gi}\n",
            r"cluster\.resources\.requests\.memroy: unknown key; valid: cpu, memory",
        ),
        (
            K8S + "  resources:\n    limits: {memory: 8GiB}\n",
            r"cluster\.resources\.limits\.memory: '8GiB' is not a Kubernetes quantity",
        ),
        (K8S + "  resources: 4\n", r"cluster\.resources: expected a mapping"),
        (
            K8S + "  gpu_workers: {gpus_per_worker: 0}\n",
            r"cluster\.gpu_workers\.gpus_per_worker: 0; expected an integer >= 1",
        ),
        (K8S + "  adaptive: {minimum: 5, maximum: 2}\n", r"cluster\.adaptive\.maximum: 2 is below"),
        (K8S + "  name: Ocean_Fields\n", r"cluster\.name: 'Ocean_Fields' is not a DaskCluster"),
        (K8S + "  env: {AWS_SECRET_ACCESS_KEY: x}\n", r"cluster\.env: .*looks like a credential"),
        (SLURM + "  walltime: 2h\n", r"cluster\.walltime: '2h' is not a SLURM time"),
        (SLURM + "  memory: lots\n", r"cluster\.memory: 'lots' is not a size"),
        (SLURM + "  cores: 0\n", r"cluster\.cores: 0; expected an integer >= 1"),
        (SLURM + "  job_extra_directives: --exclusive\n", r"job_extra_directives: .*list of str"),
        (
            SLURM + "  job_extra_directives: ['#SBATCH --exclusive']\n",
            r"cluster\.job_extra_directives: .*no '#SBATCH'",
        ),
        (
            SLURM + "  processes: 2\n  cores: 2\n  gpu: {gpus_per_job: 1}\n",
            r"cluster\.gpu\.gpus_per_job: 1 GPU\(s\) cannot be shared evenly by 2",
        ),
        (GATEWAY + "  auth: token\n", r"cluster\.auth: 'token'; valid: 'basic', 'jupyterhub'"),
        (GATEWAY + "  options: {password: x}\n", r"cluster\.options: 'password' looks like a cred"),
        ("cluster:\n  type: gateway\n", r"cluster\.address: required key missing"),
    ],
    ids=[
        "k8s-missing-image",
        "k8s-negative-workers",
        "k8s-workers-wrong-type",
        "k8s-typo",
        "k8s-nested-typo",
        "k8s-dask-size-as-quantity",
        "k8s-resources-not-mapping",
        "k8s-zero-gpus",
        "k8s-adaptive-inverted",
        "k8s-bad-name",
        "k8s-secret-in-env",
        "slurm-walltime",
        "slurm-memory",
        "slurm-zero-cores",
        "slurm-directives-not-list",
        "slurm-directive-with-sbatch",
        "slurm-gpu-not-divisible",
        "gateway-auth",
        "gateway-password-option",
        "gateway-missing-address",
    ],
)
def test_bad_deployment_file_names_file_and_field(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"bad\.yaml: " + ".*" + match):
        load_cluster_config(path)


def test_missing_optional_package_names_the_extra_to_install():
    with pytest.raises(ConfigError, match=r"pip install 'oceanfields\[kubernetes\]'"):
        _require("oceanfields_no_such_module", "kubernetes")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("cluster:\n  type: local\n  n_wrkers: 2\n", r"bad\.yaml: cluster\.n_wrkers: unknown key"),
        (
            "cluster:\n  type: yarn\n",
            r"cluster\.type: unknown type 'yarn'; valid: gateway, kubernetes, local, sched",
        ),
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
