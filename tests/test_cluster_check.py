"""`oceanfields cluster check`: what each cluster file would submit, checked without a cluster.

The Kubernetes manifests are validated against the CRDs shipped inside the installed
dask-kubernetes; the SLURM job script is built by dask-jobqueue without a batch system.
"""

from __future__ import annotations

import copy
import importlib.metadata

import dask.config
import pytest
from click.testing import CliRunner

from pipeline.cli.main import main
from pipeline.clusters.config import load_cluster_config
from pipeline.clusters.deploy import (
    SCHEDULER_PLACEHOLDER,
    describe_submission,
    gateway_request,
    kubernetes_manifests,
    slurm_job_kwargs,
    slurm_job_script,
    validate_dask_resource,
)
from pipeline.errors import ConfigError
from tests.conftest import ROOT

CLUSTERS = ROOT / "clusters"


@pytest.fixture(scope="module")
def k8s_manifests():
    pytest.importorskip("dask_kubernetes.operator")
    pytest.importorskip("jsonschema")
    return kubernetes_manifests(load_cluster_config(CLUSTERS / "kubernetes.yaml"))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("local.yaml", "local: LocalCluster, 2 worker process(es) x 1 thread(s)"),
        ("scheduler.yaml", "scheduler: connect to tcp://127.0.0.1:8786"),
        ("kubernetes.yaml", "kind: DaskCluster"),
        ("slurm.yaml", "#SBATCH -p compute"),
        ("gateway.yaml", "worker_cores: 2"),
    ],
)
def test_every_shipped_cluster_file_passes_cluster_check(name, expected):
    needs = {"kubernetes.yaml": "dask_kubernetes", "gateway.yaml": "dask_gateway"}
    if name in needs:
        pytest.importorskip(needs[name])
    result = CliRunner().invoke(main, ["cluster", "check", str(CLUSTERS / name)])
    assert result.exit_code == 0, result.output
    assert expected in result.output
    assert f"OK: {CLUSTERS / name} is a valid cluster file." in result.output


def test_cluster_check_of_a_bad_file_exits_with_one_line_naming_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("cluster:\n  type: kubernetes\n  image: x\n  n_workers: -2\n")
    result = CliRunner().invoke(main, ["cluster", "check", str(path)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines == [
        f"Error: ConfigError: {path}: cluster.n_workers: -2; expected an integer >= 0."
    ]


def test_kubernetes_manifests_are_valid_resources_for_the_pinned_dask_kubernetes(k8s_manifests):
    version = importlib.metadata.version("dask-kubernetes")
    assert "2026.3" <= version < "2027", version  # the range pinned in pyproject.toml
    assert [m["kind"] for m in k8s_manifests] == [
        "DaskCluster",
        "DaskWorkerGroup",
        "DaskAutoscaler",
    ]
    for manifest in k8s_manifests:
        validate_dask_resource(manifest)  # raises on any schema violation
    cluster, gpu_group, autoscaler = k8s_manifests
    assert cluster["metadata"] == {"name": "oceanfields", "namespace": "dask"}
    worker = cluster["spec"]["worker"]
    assert worker["replicas"] == 4
    (container,) = worker["spec"]["containers"]
    assert container["image"] == "ghcr.io/oceanfields/oceanfields:0.1.0"
    assert container["args"][:4] == ["dask", "worker", "--nthreads", "2"]
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "8Gi"}
    assert {"name": "OMP_NUM_THREADS", "value": "1"} in container["env"]
    (scheduler,) = cluster["spec"]["scheduler"]["spec"]["containers"]
    assert scheduler["args"][:2] == ["dask", "scheduler"]
    assert scheduler["resources"]["requests"] == {"cpu": "1", "memory": "4Gi"}
    assert cluster["spec"]["idleTimeout"] == 3600
    # The GPU worker group: nvidia.com/gpu limits and the Dask worker resource GPU.
    assert gpu_group["metadata"]["name"] == "oceanfields-gpu"
    assert gpu_group["spec"]["cluster"] == "oceanfields"
    (gpu,) = gpu_group["spec"]["worker"]["spec"]["containers"]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu["image"].endswith("-cuda")
    args = gpu["args"]
    assert args[args.index("--resources") + 1] == "GPU=1"
    assert autoscaler["spec"] == {"cluster": "oceanfields", "minimum": 2, "maximum": 20}


def test_the_dask_commands_in_the_manifests_exist_in_distributed():
    # distributed ships `dask worker` / `dask scheduler`, not dask-worker / dask-scheduler.
    names = {ep.name for ep in importlib.metadata.entry_points(group="dask_cli")}
    assert {"worker", "scheduler"} <= names


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda m: m["spec"]["worker"].update(replicas="4"), r"spec\.worker\.replicas: '4' is not"),
        (
            lambda m: m["spec"]["worker"]["spec"]["containers"][0].update(imagePullPolicyy="x"),
            r"spec\.worker\.spec\.containers\.0: Additional properties .*'imagePullPolicyy'",
        ),
        (lambda m: m["spec"].pop("scheduler"), r"spec: 'scheduler' is a required property"),
        (lambda m: m.update(apiVersion="kubernetes.dask.org/v2"), r"apiVersion: .*expected"),
    ],
    ids=["wrong-type", "unknown-field", "missing-scheduler", "wrong-api-version"],
)
def test_crd_validation_rejects_an_invalid_dask_cluster(k8s_manifests, mutate, match):
    manifest = copy.deepcopy(k8s_manifests[0])
    mutate(manifest)
    with pytest.raises(ConfigError, match=r"DaskCluster 'oceanfields': " + match):
        validate_dask_resource(manifest)


@pytest.fixture(scope="module")
def slurm_gpu_config(tmp_path_factory):
    pytest.importorskip("dask_jobqueue")
    text = (
        (CLUSTERS / "slurm.yaml")
        .read_text()
        .replace(
            "  # gpu:\n  #   partition: gpu\n  #   gpus_per_job: 2",
            "  gpu:\n    partition: gpu\n    gpus_per_job: 2",
        )
    )
    text = text.replace("  #   gres_type: a100", "    gres_type: a100")
    path = tmp_path_factory.mktemp("slurm") / "slurm-gpu.yaml"
    path.write_text(text)
    return load_cluster_config(path)


def test_slurm_job_script_has_the_requested_directives():
    pytest.importorskip("dask_jobqueue")
    script = slurm_job_script(load_cluster_config(CLUSTERS / "slurm.yaml"))
    lines = script.splitlines()
    for directive in [
        "#SBATCH -p compute",
        "#SBATCH -A ocean-project",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=32G",
        "#SBATCH -t 02:00:00",
        "#SBATCH --exclusive",
        "#SBATCH -e logs/dask/dask-worker-%J.err",
    ]:
        assert directive in lines
    assert "gres" not in script
    assert "source $HOME/oceanfields/.venv/bin/activate" in lines
    (command,) = [line for line in lines if "distributed.cli.dask_worker" in line]
    assert command.startswith(f"python -m distributed.cli.dask_worker {SCHEDULER_PLACEHOLDER}")
    assert "--nworkers 2" in command
    assert "--nthreads 4" in command
    assert "--local-directory $TMPDIR" in command
    assert "--lifetime 110m" in command


SITE = {
    "jobqueue.slurm.cores": 7,
    "jobqueue.slurm.memory": "20GiB",
    "jobqueue.slurm.walltime": "03:30:00",
    "jobqueue.slurm.processes": 1,
}


def test_slurm_options_left_out_come_from_the_sites_jobqueue_config(tmp_path):
    pytest.importorskip("dask_jobqueue")
    path = tmp_path / "site.yaml"
    path.write_text("cluster:\n  type: slurm\n  queue: compute\n")
    config = load_cluster_config(path)
    assert (config.cores, config.memory, config.walltime, config.processes) == (None,) * 4
    with dask.config.set(SITE):
        assert not {"cores", "memory", "walltime", "processes"} & set(slurm_job_kwargs(config))
        result = CliRunner().invoke(main, ["cluster", "check", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for directive in ["#SBATCH --cpus-per-task=7", "#SBATCH --mem=20G", "#SBATCH -t 03:30:00"]:
        assert directive in lines
    assert "1 worker process(es), 7 core(s), 20.00 GiB per job" in result.output


def test_slurm_options_in_the_file_win_over_the_sites_config(tmp_path):
    pytest.importorskip("dask_jobqueue")
    with dask.config.set(SITE):
        script = slurm_job_script(load_cluster_config(CLUSTERS / "slurm.yaml"))
    lines = script.splitlines()
    assert {"#SBATCH --cpus-per-task=8", "#SBATCH --mem=32G", "#SBATCH -t 02:00:00"} <= set(lines)


@pytest.mark.parametrize("missing", ["cores", "memory"])
def test_slurm_cores_or_memory_set_nowhere_is_one_error_naming_both_places(missing):
    pytest.importorskip("dask_jobqueue")
    given = {"cores": 4, "memory": "16GiB"}
    del given[missing]
    config = load_cluster_config({"cluster": {"type": "slurm", **given}})
    with (
        dask.config.set({f"jobqueue.slurm.{missing}": None}),
        pytest.raises(ConfigError, match=rf"cluster\.{missing}: not set, nor jobqueue\.slurm\."),
    ):
        slurm_job_script(config)


def test_slurm_gpus_are_shared_by_the_worker_processes_dask_jobqueue_starts():
    config = load_cluster_config(
        {"cluster": {"type": "slurm", "cores": 8, "memory": "8GiB", "gpu": {"gpus_per_job": 4}}}
    )
    with dask.config.set({"jobqueue.slurm.processes": None}):  # dask-jobqueue: 8 cores -> 4
        kwargs = slurm_job_kwargs(config)
    assert (kwargs["processes"], kwargs["worker_extra_args"]) == (4, ["--resources", "GPU=1"])
    with (
        dask.config.set({"jobqueue.slurm.processes": 3}),
        pytest.raises(ConfigError, match=r"cluster\.gpu\.gpus_per_job: 4 GPU\(s\) cannot be"),
    ):
        slurm_job_kwargs(config)


def test_slurm_gpu_partition_requests_gres_and_the_worker_resource(slurm_gpu_config):
    lines = slurm_job_script(slurm_gpu_config).splitlines()
    assert "#SBATCH -p gpu" in lines
    assert "#SBATCH -p compute" not in lines
    assert "#SBATCH --gres=gpu:a100:2" in lines
    (command,) = [line for line in lines if "distributed.cli.dask_worker" in line]
    assert "--resources GPU=1" in command  # 2 GPUs shared by the job's 2 worker processes


def test_slurm_cluster_accepts_the_options_and_writes_the_same_script(slurm_gpu_config):
    from dask_jobqueue import SLURMCluster

    kwargs = slurm_job_kwargs(slurm_gpu_config)
    local = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}
    with SLURMCluster(**kwargs, scheduler_options=local) as cluster:
        real = cluster.job_script()
        address = cluster.scheduler_address
        assert len(cluster.workers) == 0  # nothing submitted: no batch system needed
    assert real == slurm_job_script(slurm_gpu_config).replace(SCHEDULER_PLACEHOLDER, address)


def test_gateway_check_shows_the_request_without_contacting_the_server():
    pytest.importorskip("dask_gateway")
    config = load_cluster_config(CLUSTERS / "gateway.yaml")
    request = gateway_request(config)
    assert request["auth"] == "jupyterhub"
    assert request["cluster_options"] == {
        "image": "ghcr.io/oceanfields/oceanfields:0.1.0",
        "worker_cores": 2,
        "worker_memory": 8,
    }
    assert request["adapt"] == {"minimum": 2, "maximum": 20}
    text = describe_submission(config)
    assert "auth: jupyterhub" in text
    assert "token" not in text.lower()
