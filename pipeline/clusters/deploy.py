"""What a cluster file submits, and starting it: Kubernetes, SLURM, dask-gateway.

The validated configs of :mod:`pipeline.clusters.config` become,
without any live cluster,

- Kubernetes: the ``DaskCluster`` manifest (``dask_kubernetes.operator.make_cluster_spec``),
  a ``DaskWorkerGroup`` for the GPU workers and a ``DaskAutoscaler`` for the adaptive
  bounds, each checked against the CRD schema shipped inside the installed dask-kubernetes;
- SLURM: the batch script dask-jobqueue submits for each job;
- dask-gateway: the cluster options sent to the server.

:func:`start_cluster` starts the same thing for real and closes it on exit. The optional
packages are imported only when needed; a missing one is a ``ConfigError`` naming the
extra to install.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
import importlib.resources
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import dask.config
import yaml
from dask.utils import format_bytes
from distributed.deploy.utils import nprocesses_nthreads

from pipeline.clusters.config import (
    ClusterConfig,
    GatewayConfig,
    KubernetesConfig,
    SlurmConfig,
    _check_gpu_share,
)
from pipeline.errors import ConfigError

__all__ = [
    "describe_submission",
    "gateway_request",
    "kubernetes_manifests",
    "slurm_job_kwargs",
    "slurm_job_script",
    "start_cluster",
    "validate_dask_resource",
]

logger = logging.getLogger(__name__)

_CRD_DIR = "operator/deployment/helm/dask-kubernetes-operator/crds"
#: The scheduler's address is only known once it runs; the check shows this instead.
SCHEDULER_PLACEHOLDER = "tcp://<scheduler-address>:8786"


def _require(module: str, extra: str) -> Any:
    """Import an optional module, or raise a ConfigError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(
            f"this cluster file needs {module.split('.')[0]} ({err}); install it with "
            f"pip install 'oceanfields[{extra}]'."
        ) from err


def _drop_nulls(value: Any) -> Any:
    """Drop null fields (the API server drops them the same way)."""
    if isinstance(value, Mapping):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _worker_command(threads: int, gpus: int = 0) -> list[str]:
    # distributed no longer installs the dask-worker/dask-scheduler scripts the operator's
    # templates name: the `dask` command runs both.
    command = ["dask", "worker", "--nthreads", str(threads)]
    return [*command, "--resources", f"GPU={gpus}"] if gpus else command


def kubernetes_manifests(config: KubernetesConfig) -> list[dict[str, Any]]:
    """Build the manifests of the resources a Kubernetes cluster file creates.

    Parameters
    ----------
    config : KubernetesConfig
        Validated configuration.

    Returns
    -------
    list of dict
        The ``DaskCluster``, then a ``DaskWorkerGroup`` for the GPU workers and a
        ``DaskAutoscaler`` for the adaptive bounds when configured.

    Raises
    ------
    ConfigError
        When dask-kubernetes is not installed.
    """
    operator = _require("dask_kubernetes.operator", "kubernetes")
    meta: dict[str, Any] = {"namespace": config.namespace}
    resources = config.resources.as_dict() if config.resources else None
    env = dict(config.env) or None
    cluster = operator.make_cluster_spec(
        name=config.name,
        image=config.image,
        n_workers=config.n_workers,
        resources=resources,
        env=env,
        worker_command=_worker_command(config.threads_per_worker),
        scheduler_service_type=config.scheduler_service_type,
        idle_timeout=config.idle_timeout_s,
    )
    cluster["metadata"].update(meta)
    scheduler = cluster["spec"]["scheduler"]["spec"]["containers"][0]
    if scheduler["args"][:1] == ["dask-scheduler"]:
        scheduler["args"] = ["dask", "scheduler", *scheduler["args"][1:]]
    if config.scheduler_resources is not None:
        scheduler["resources"] = config.scheduler_resources.as_dict()
    manifests = [cluster]
    gpu = config.gpu_workers
    if gpu is not None:
        group_resources = gpu.resources or config.resources
        worker = operator.make_worker_spec(
            image=gpu.image or config.image,
            n_workers=gpu.n_workers,
            resources=(
                group_resources.as_dict(gpus=gpu.gpus_per_worker)
                if group_resources
                else {"limits": {"nvidia.com/gpu": str(gpu.gpus_per_worker)}}
            ),
            env=env,
            worker_command=_worker_command(gpu.threads_per_worker, gpu.gpus_per_worker),
        )
        manifests.append(
            {
                "apiVersion": "kubernetes.dask.org/v1",
                "kind": "DaskWorkerGroup",
                "metadata": {"name": f"{config.name}-{gpu.name}", **meta},
                "spec": {"cluster": config.name, "worker": worker},
            }
        )
    if config.adaptive is not None:
        manifests.append(
            {
                "apiVersion": "kubernetes.dask.org/v1",
                "kind": "DaskAutoscaler",
                "metadata": {
                    "name": config.name,
                    **meta,
                    "labels": {
                        "dask.org/cluster-name": config.name,
                        "dask.org/component": "autoscaler",
                    },
                },
                "spec": {
                    "cluster": config.name,
                    "minimum": config.adaptive.minimum,
                    "maximum": config.adaptive.maximum,
                },
            }
        )
    return [_drop_nulls(m) for m in manifests]


def _strict(schema: Any) -> Any:
    """Make a CRD schema reject unknown fields, as ``kubectl apply --validate=strict`` does."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.lru_cache(maxsize=8)
def _crd(kind: str) -> tuple[str, dict[str, Any]]:
    """``(apiVersion, strict openAPIV3Schema)`` of a Dask resource from the installed CRDs."""
    _require("dask_kubernetes", "kubernetes")
    path = importlib.resources.files("dask_kubernetes").joinpath(f"{_CRD_DIR}/{kind.lower()}.yaml")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ConfigError(
            f"no CRD for {kind!r} in dask-kubernetes {_version('dask-kubernetes')} "
            f"({_CRD_DIR}); valid kinds: DaskCluster, DaskWorkerGroup, DaskAutoscaler."
        ) from err
    crd = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    api = f"{crd['spec']['group']}/{version['name']}"
    return api, _strict(version["schema"]["openAPIV3Schema"])


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def validate_dask_resource(manifest: Mapping[str, Any]) -> None:
    """Check a Dask resource manifest against the CRD of the installed dask-kubernetes.

    The schema is the ``openAPIV3Schema`` dask-kubernetes ships with its Helm chart;
    unknown fields are errors (as ``kubectl apply --validate=strict``).

    Parameters
    ----------
    manifest : mapping
        A ``DaskCluster``, ``DaskWorkerGroup`` or ``DaskAutoscaler`` manifest.

    Raises
    ------
    ConfigError
        Naming the resource, the dotted path of the first invalid field and what the
        schema expects.
    """
    jsonschema = _require("jsonschema", "kubernetes")
    kind = str(manifest.get("kind"))
    api, schema = _crd(kind)
    label = f"{kind} {manifest.get('metadata', {}).get('name')!r}"
    if manifest.get("apiVersion") != api:
        raise ConfigError(f"{label}: apiVersion: {manifest.get('apiVersion')!r}; expected {api}.")
    body = {k: v for k, v in manifest.items() if k not in ("apiVersion", "kind", "metadata")}
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.path)))
    if errors:
        first = errors[0]
        path = ".".join(str(p) for p in first.absolute_path) or "(top)"
        raise ConfigError(
            f"{label}: {path}: {first.message} (CRD of dask-kubernetes "
            f"{_version('dask-kubernetes')}; {len(errors)} error(s))."
        )


def slurm_job_kwargs(config: SlurmConfig) -> dict[str, Any]:
    """Keyword arguments of ``dask_jobqueue.SLURMCluster`` (and its job class).

    Parameters
    ----------
    config : SlurmConfig
        Validated configuration.

    Returns
    -------
    dict
        Only the options the file sets: dask-jobqueue reads the others from dask's
        config (``jobqueue.slurm.cores``, ``.memory``, ``.walltime``, ...), as
        ``SLURMCluster()`` itself does, so a site's ``jobqueue.yaml`` applies. With
        ``gpu``, ``processes`` is passed too (the file's, else ``jobqueue.slurm.processes``,
        else dask-jobqueue's default for the cores), since it decides each worker's
        share of the job's GPUs.

    Raises
    ------
    ConfigError
        When ``cores`` or ``memory`` is set neither in the file nor in dask's config
        (dask-jobqueue needs both), or when the job's GPUs cannot be shared evenly by
        its worker processes.

    Examples
    --------
    >>> from pipeline.clusters.config import SlurmConfig, SlurmGpuConfig
    >>> gpu = SlurmGpuConfig(gpus_per_job=2)
    >>> kw = slurm_job_kwargs(SlurmConfig(cores=4, memory="16GiB", processes=1, gpu=gpu))
    >>> kw["queue"], kw["job_extra_directives"], kw["worker_extra_args"]
    ('gpu', ['--gres=gpu:2'], ['--resources', 'GPU=2'])
    >>> sorted(slurm_job_kwargs(SlurmConfig(cores=4, memory="16GiB")))[:3]  # no walltime
    ['cores', 'job_extra_directives', 'job_script_prologue']
    """
    for name in ("cores", "memory"):
        if getattr(config, name) is None and _site_slurm(name) is None:
            raise ConfigError(
                f"cluster.{name}: not set, nor jobqueue.slurm.{name} in dask's config; "
                f"dask-jobqueue needs it: set {name}: in the cluster file, or "
                f"jobqueue.slurm.{name} in the site's ~/.config/dask/jobqueue.yaml.",
                key=f"cluster.{name}",
            )
    directives = list(config.job_extra_directives)
    worker_args = list(config.worker_extra_args)
    queue = config.queue
    processes = config.processes
    if config.gpu is not None:
        queue = config.gpu.partition
        gres = ":".join(["gpu", *([config.gpu.gres_type] if config.gpu.gres_type else [])])
        directives.append(f"--gres={gres}:{config.gpu.gpus_per_job}")
        processes = _slurm_processes(config)
        try:
            _check_gpu_share(config.gpu.gpus_per_job, processes)
        except ConfigError as err:
            raise ConfigError(
                f"cluster.{err} (processes: {processes}, from dask's config or dask-jobqueue's "
                "default as the file leaves it out)",
                key=f"cluster.{err.key}",
            ) from err
        worker_args += ["--resources", f"GPU={config.gpu.gpus_per_job // processes}"]
    kwargs: dict[str, Any] = {
        "queue": queue,
        "account": config.account,
        "cores": config.cores,
        "processes": processes,
        "memory": config.memory,
        "walltime": config.walltime,
        "job_extra_directives": directives,
        "worker_extra_args": worker_args,
        "job_script_prologue": list(config.job_script_prologue),
        "local_directory": config.local_directory,
        "log_directory": config.log_directory,
        "interface": config.interface,
        "python": config.python,
    }
    return {k: v for k, v in kwargs.items() if v is not None}


def _site_slurm(name: str) -> Any:
    """``jobqueue.slurm.<name>`` of dask's config (the site's jobqueue.yaml), or None."""
    return dask.config.get(f"jobqueue.slurm.{name}", None)


def _slurm_processes(config: SlurmConfig) -> int:
    """Worker processes per job as dask-jobqueue decides them: file, dask config, default."""
    if config.processes is not None:
        return config.processes
    site = _site_slurm("processes")
    if site is not None:
        return int(site)
    cores = config.cores if config.cores is not None else int(_site_slurm("cores"))
    return int(nprocesses_nthreads(cores)[0])


def _slurm_job(config: SlurmConfig) -> Any:
    """Build the dask-jobqueue job object of one SLURM job (no scheduler, no batch system)."""
    jobqueue = _require("dask_jobqueue", "hpc")
    job_cls = jobqueue.SLURMCluster.job_cls
    try:
        return job_cls(SCHEDULER_PLACEHOLDER, name="dummy-name", **slurm_job_kwargs(config))
    except (TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"dask-jobqueue rejects the SLURM options: {err}") from err


def slurm_job_script(config: SlurmConfig) -> str:
    """Build the batch script of each SLURM job with dask-jobqueue, no batch system needed.

    It is ``SLURMCluster(...).job_script()`` with the scheduler's address (known only
    once it runs) shown as ``tcp://<scheduler-address>:8786``; building it starts no
    scheduler, so an ``interface`` absent from this machine is fine. Options the file
    leaves out come from dask's config (``jobqueue.slurm``), as in ``SLURMCluster()``.

    Parameters
    ----------
    config : SlurmConfig
        Validated configuration.

    Returns
    -------
    str
        The ``#!/usr/bin/env bash`` script with its ``#SBATCH`` directives.

    Raises
    ------
    ConfigError
        When dask-jobqueue is not installed or rejects an option, or ``cores`` or
        ``memory`` is set nowhere (:func:`slurm_job_kwargs`).
    """
    return str(_slurm_job(config).job_script())


def gateway_request(config: GatewayConfig) -> dict[str, Any]:
    """Build the gateway request: where, how to authenticate, cluster options, size.

    Parameters
    ----------
    config : GatewayConfig
        Validated configuration.

    Returns
    -------
    dict
        ``address``, ``auth`` (a name), ``cluster_options`` and ``scale`` or ``adapt``.

    Examples
    --------
    >>> from pipeline.clusters.config import GatewayConfig
    >>> gateway_request(GatewayConfig(address="https://g.org", options=(("image", "x"),)))
    {'address': 'https://g.org', 'auth': None, 'cluster_options': {'image': 'x'}, 'scale': 2}
    """
    out: dict[str, Any] = {"address": config.address, "auth": config.auth}
    for key in ("proxy_address", "public_address"):
        if getattr(config, key):
            out[key] = getattr(config, key)
    out["cluster_options"] = dict(config.options)
    if config.adaptive is not None:
        out["adapt"] = {"minimum": config.adaptive.minimum, "maximum": config.adaptive.maximum}
    else:
        out["scale"] = config.n_workers
    return out


def describe_submission(config: ClusterConfig) -> str:
    """Describe what a cluster file would submit, without any live cluster.

    Parameters
    ----------
    config : ClusterConfig
        Validated configuration (:func:`pipeline.clusters.config.load_cluster_config`).

    Returns
    -------
    str
        Local and scheduler: one line. Kubernetes: the manifests as YAML documents,
        checked against the CRDs. SLURM: the job script. Gateway: the request as YAML.

    Raises
    ------
    ConfigError
        When the deployment's extra is missing or a manifest fails its CRD.

    Examples
    --------
    >>> from pipeline.clusters.config import load_cluster_config
    >>> describe_submission(load_cluster_config({"cluster": {"n_workers": 2}}))
    'local: LocalCluster, 2 worker process(es) x 1 thread(s), memory_limit=auto'
    """
    if config.type == "local":
        where = "process(es)" if config.processes else "thread(s) of this process"
        workers = config.n_workers if config.n_workers is not None else "one per core"
        return (
            f"local: LocalCluster, {workers} worker {where} x {config.threads_per_worker} "
            f"thread(s), memory_limit={config.memory_limit}"
        )
    if config.type == "scheduler":
        if config.scheduler_file:
            return f"scheduler: connect through scheduler file {config.scheduler_file}"
        return f"scheduler: connect to {config.address}"
    if config.type == "kubernetes":
        manifests = kubernetes_manifests(config)
        for manifest in manifests:
            validate_dask_resource(manifest)
        kinds = ", ".join(m["kind"] for m in manifests)
        head = (
            f"# kubernetes: {kinds}; valid against the CRDs of dask-kubernetes "
            f"{_version('dask-kubernetes')}\n"
        )
        return head + yaml.safe_dump_all(manifests, sort_keys=False)
    if config.type == "slurm":
        job = _slurm_job(config)
        size = (
            f"adaptive {config.adaptive.minimum}-{config.adaptive.maximum} job(s)"
            if config.adaptive
            else f"{config.jobs} job(s)"
        )
        head = (
            f"# slurm: {size} of {job.worker_processes} worker process(es), "
            f"{job.worker_cores} core(s), {format_bytes(job.worker_memory)} per job "
            "(options the file leaves out: dask config jobqueue.slurm); each job runs "
            f"(dask-jobqueue {_version('dask-jobqueue')}):\n"
        )
        return head + str(job.job_script())
    _require("dask_gateway", "gateway")
    head = f"# gateway: request (dask-gateway {_version('dask-gateway')}):\n"
    return head + yaml.safe_dump(gateway_request(config), sort_keys=False)


@contextlib.contextmanager
def start_cluster(config: KubernetesConfig | SlurmConfig | GatewayConfig) -> Iterator[Any]:
    """Start a remote deployment and yield its cluster object; close it on exit.

    Parameters
    ----------
    config : KubernetesConfig, SlurmConfig or GatewayConfig
        Validated configuration.

    Yields
    ------
    distributed.deploy.Cluster
        ``KubeCluster``, ``SLURMCluster`` or ``GatewayCluster``, sized as configured.

    Raises
    ------
    ConfigError
        When the deployment's extra is not installed.
    """
    if config.type == "kubernetes":
        operator = _require("dask_kubernetes.operator", "kubernetes")
        cluster_spec, *others = kubernetes_manifests(config)
        logger.info("creating DaskCluster %r (%d workers)", config.name, config.n_workers)
        with operator.KubeCluster(
            custom_cluster_spec=cluster_spec,
            namespace=config.namespace,
            resource_timeout=config.resource_timeout_s,
            shutdown_on_close=True,
            quiet=True,
        ) as cluster:
            for manifest in others:
                if manifest["kind"] == "DaskWorkerGroup" and config.gpu_workers:
                    logger.info("adding GPU worker group %r", manifest["metadata"]["name"])
                    cluster.add_worker_group(
                        config.gpu_workers.name, custom_spec=manifest["spec"]["worker"]
                    )
            if config.adaptive is not None:
                cluster.adapt(minimum=config.adaptive.minimum, maximum=config.adaptive.maximum)
            yield cluster
        return
    if config.type == "slurm":
        jobqueue = _require("dask_jobqueue", "hpc")
        with jobqueue.SLURMCluster(**slurm_job_kwargs(config)) as cluster:
            if config.adaptive is not None:
                logger.info("SLURM: adaptive %s", config.adaptive)
                cluster.adapt(
                    minimum_jobs=config.adaptive.minimum, maximum_jobs=config.adaptive.maximum
                )
            else:
                logger.info("SLURM: submitting %d job(s)", config.jobs)
                cluster.scale(jobs=config.jobs)
            yield cluster
        return
    gateway_module = _require("dask_gateway", "gateway")
    request = gateway_request(config)
    gateway = gateway_module.Gateway(
        address=config.address,
        proxy_address=config.proxy_address,
        public_address=config.public_address,
        auth=config.auth,
    )
    with gateway, gateway.new_cluster(**request["cluster_options"]) as cluster:
        if config.adaptive is not None:
            cluster.adapt(minimum=config.adaptive.minimum, maximum=config.adaptive.maximum)
        else:
            cluster.scale(config.n_workers)
        yield cluster
