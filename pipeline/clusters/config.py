"""Cluster files (``clusters/*.yaml``): one validated, frozen config per deployment.

A cluster file is YAML with one top-level ``cluster`` mapping whose ``type`` picks the
deployment, the other keys being that deployment's options::

    cluster:
      type: local     # or scheduler, kubernetes, slurm, gateway
      n_workers: 2

``local`` (LocalCluster, the default), ``scheduler`` (a running scheduler, by address or
scheduler file), ``kubernetes`` (dask-kubernetes operator, extra ``oceanfields[kubernetes]``),
``slurm`` (dask-jobqueue, extra ``oceanfields[hpc]``), ``gateway`` (dask-gateway, extra
``oceanfields[gateway]``).
The shipped files in ``clusters/`` document every option. Defaults live only in the
config dataclasses below (a SLURM option left out falls back to dask-jobqueue's own
configuration, ``jobqueue.slurm`` in dask's config); unknown keys are errors that list the
valid ones, and every error names the file and the dotted key: each config checks its
values with the ``check_*`` helpers of :mod:`pipeline.config`, naming its keys relative
to its own section, and :func:`~pipeline.config.build_config` prefixes the file and the
section (``cluster.adaptive.maximum``). No credential is ever read from or written to
these files: authentication is named (``auth: jupyterhub``) and its secrets come from the
environment. What a file would submit (manifests, job script) is built by
:mod:`pipeline.clusters.deploy`, which also starts the remote deployments;
:func:`pipeline.clusters.client.cluster_client` turns a file into a ``Client``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from dask.utils import parse_bytes

from pipeline.config import (
    build_config,
    check_choice,
    check_count,
    check_strings,
    config_error,
    read_yaml,
)
from pipeline.errors import ConfigError

__all__ = [
    "AdaptiveConfig",
    "ClusterConfig",
    "GatewayConfig",
    "KubernetesConfig",
    "KubernetesGpuConfig",
    "LocalConfig",
    "PodResources",
    "ResourceQuantities",
    "SchedulerConfig",
    "SlurmConfig",
    "SlurmGpuConfig",
    "load_cluster_config",
]

logger = logging.getLogger(__name__)

# A DaskCluster name: lowercase RFC 1123 label short enough for "<name>-scheduler".
_K8S_NAME = re.compile(r"^(?=.{1,53}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# SLURM --time: minutes, [days-]hours:minutes[:seconds], days-hours.
_WALLTIME = re.compile(r"^[0-9]+(-[0-9]+)?(:[0-9]{2}){0,2}$")
# Names that hold secrets: such values never go in a cluster file.
_SECRET = re.compile(r"pass(word)?|secret|token|credential|api_?key|private_?key", re.I)
_GATEWAY_AUTH = ("basic", "jupyterhub", "kerberos")


def _pairs(value: Any) -> tuple[tuple[str, Any], ...]:
    """Turn a YAML mapping of names to scalars into sorted, hashable pairs."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"expected a mapping of names to values, got {value!r}.")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str | int | float | bool):
            raise ConfigError(f"{key!r}: {item!r} is not a plain value (text, number, boolean).")
        if _SECRET.search(key):
            raise ConfigError(
                f"{key!r} looks like a credential; credentials never go in cluster files: set "
                "it in the environment (or a Kubernetes Secret) where the cluster runs."
            )
    return tuple(sorted(value.items()))


def _check_gpu_share(gpus_per_job: int, processes: int) -> None:
    """Raise a ConfigError unless a job's GPUs are shared evenly by its worker processes."""
    if gpus_per_job % processes:
        raise config_error(
            "gpu.gpus_per_job",
            gpus_per_job,
            "set processes to 1 or a divisor of gpus_per_job",
            problem=f"GPU(s) cannot be shared evenly by {processes} worker processes",
        )


# A Kubernetes quantity (2, 500m, 0.5, 8Gi, 8G): not a dask size string such as "8GiB".
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


@dataclass(frozen=True, kw_only=True)
class ResourceQuantities:
    """CPU and memory of a container, as Kubernetes quantities.

    Attributes
    ----------
    cpu : str, int, float or None
        Cores (``2``, ``0.5``, ``500m``).
    memory : str or None
        Bytes as a Kubernetes quantity (``8Gi``, ``8G``; not the dask spelling ``8GiB``).
    """

    cpu: str | int | float | None = None
    memory: str | None = None

    def __post_init__(self) -> None:
        """Check the values; a ConfigError names the key."""
        for name in ("cpu", "memory"):
            value = getattr(self, name)
            if value is not None and not _QUANTITY.match(str(value)):
                raise config_error(
                    name,
                    value,
                    "write e.g. 2, 500m, 8Gi (Ki/Mi/Gi, not KiB/MiB/GiB)",
                    problem="is not a Kubernetes quantity",
                )

    def as_dict(self) -> dict[str, str]:
        """Return the given quantities as the strings Kubernetes expects."""
        return {k: str(v) for k, v in (("cpu", self.cpu), ("memory", self.memory)) if v is not None}


@dataclass(frozen=True, kw_only=True)
class PodResources:
    """Requests (what the scheduler reserves) and limits (the cap) of a container.

    Attributes
    ----------
    requests, limits : ResourceQuantities or None
        ``{cpu: ..., memory: ...}``; dask workers size themselves from the limits.
    """

    requests: ResourceQuantities | None = None
    limits: ResourceQuantities | None = None

    def as_dict(self, *, gpus: int = 0) -> dict[str, dict[str, str]]:
        """Return the Kubernetes ``resources`` block; ``gpus`` adds ``nvidia.com/gpu`` limits."""
        out = {k: v.as_dict() for k, v in (("requests", self.requests), ("limits", self.limits))}
        out = {k: v for k, v in out.items() if v}
        if gpus:
            out.setdefault("limits", {})["nvidia.com/gpu"] = str(gpus)
        return out


@dataclass(frozen=True, kw_only=True)
class LocalConfig:
    """A ``LocalCluster`` on this machine.

    Attributes
    ----------
    n_workers : int or None
        Worker processes (None: one per core).
    threads_per_worker : int
        Threads per worker.
    memory_limit : str
        Memory limit per worker (dask size string, e.g. ``"4GiB"``; ``"auto"`` splits
        the machine's memory).
    processes : bool
        Workers as separate processes (True) or threads of this process.
    dashboard_address : str
        Where the dashboard listens (``":0"`` picks a free port).
    """

    type: Literal["local"] = "local"
    n_workers: int | None = None
    threads_per_worker: int = 1
    memory_limit: str = "auto"
    processes: bool = True
    dashboard_address: str = "127.0.0.1:0"

    def __post_init__(self) -> None:
        """Check the values; a ConfigError names the key."""
        check_count("n_workers", self.n_workers, 1, allow_none=True)
        check_count("threads_per_worker", self.threads_per_worker, 1)
        if self.memory_limit != "auto":
            try:
                parse_bytes(self.memory_limit)
            except (TypeError, ValueError) as err:
                raise config_error(
                    "memory_limit",
                    self.memory_limit,
                    "write a size per worker such as 4GiB, or auto",
                    problem="is not a size",
                ) from err


@dataclass(frozen=True, kw_only=True)
class SchedulerConfig:
    """Connect to a running scheduler, by address or scheduler file.

    Attributes
    ----------
    address : str or None
        ``tcp://host:port`` of the scheduler.
    scheduler_file : str or None
        Path of a scheduler file written by ``dask scheduler --scheduler-file``.
    """

    type: Literal["scheduler"] = "scheduler"
    address: str | None = None
    scheduler_file: str | None = None


@dataclass(frozen=True, kw_only=True)
class AdaptiveConfig:
    """Adaptive scaling bounds (workers; SLURM: jobs).

    Attributes
    ----------
    minimum : int
        Fewest workers (jobs) kept while idle.
    maximum : int
        Most workers (jobs) under load.
    """

    minimum: int = 0
    maximum: int = 10

    def __post_init__(self) -> None:
        """Check the values; a ConfigError names the key."""
        check_count("minimum", self.minimum)
        check_count("maximum", self.maximum, 1)
        if self.maximum < self.minimum:
            raise config_error(
                "maximum",
                self.maximum,
                "expected maximum >= minimum; raise maximum or lower minimum",
                problem=f"is below minimum {self.minimum}",
            )


@dataclass(frozen=True, kw_only=True)
class KubernetesGpuConfig:
    """A second worker group on GPU nodes, advertising the Dask worker resource ``GPU``.

    Attributes
    ----------
    name : str
        Group name (the DaskWorkerGroup is ``<cluster name>-<name>``).
    n_workers : int
        GPU workers.
    gpus_per_worker : int
        ``nvidia.com/gpu`` limit per pod, also the worker's ``--resources GPU=N``.
    threads_per_worker : int
        Threads per GPU worker.
    image : str or None
        Image of the GPU workers (a CUDA build); None: the cluster's image.
    resources : PodResources or None
        CPU and memory of a GPU worker; None: the cluster's worker resources.
    """

    name: str = "gpu"
    n_workers: int = 1
    gpus_per_worker: int = 1
    threads_per_worker: int = 1
    image: str | None = None
    resources: PodResources | None = None

    def __post_init__(self) -> None:
        """Check the values; a ConfigError names the key."""
        check_count("n_workers", self.n_workers)
        check_count("gpus_per_worker", self.gpus_per_worker, 1)
        check_count("threads_per_worker", self.threads_per_worker, 1)
        if not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", self.name):
            raise config_error(
                "name",
                self.name,
                "use a-z, 0-9 and '-', e.g. gpu",
                problem="is not a lowercase name",
            )


@dataclass(frozen=True, kw_only=True)
class KubernetesConfig:
    """A Dask cluster on Kubernetes through the dask-kubernetes operator.

    Attributes
    ----------
    image : str
        Image of the scheduler and workers (built from ``clusters/Dockerfile``); required.
    name : str
        DaskCluster name (lowercase RFC 1123 label, at most 53 characters).
    namespace : str or None
        Namespace; None: the current context's.
    n_workers : int
        Workers of the default group at start.
    threads_per_worker : int
        Threads per worker (``dask worker --nthreads``).
    resources : PodResources or None
        Requests and limits of each worker (and of the scheduler unless
        ``scheduler_resources`` is given).
    scheduler_resources : PodResources or None
        Requests and limits of the scheduler pod.
    env : tuple of (str, str)
        Environment of the scheduler and workers (a mapping in YAML; no secrets).
    adaptive : AdaptiveConfig or None
        Adaptive bounds of the default group (a DaskAutoscaler); None: fixed size.
    gpu_workers : KubernetesGpuConfig or None
        An extra worker group on GPU nodes.
    idle_timeout_s : int
        Delete the cluster after this many idle seconds (0: never).
    resource_timeout_s : int
        Seconds to wait for the scheduler pod (image pulls included).
    scheduler_service_type : {"ClusterIP", "NodePort", "LoadBalancer"}
        How the scheduler's service is exposed.
    """

    type: Literal["kubernetes"] = "kubernetes"
    image: str
    name: str = "oceanfields"
    namespace: str | None = None
    n_workers: int = 2
    threads_per_worker: int = 1
    resources: PodResources | None = None
    scheduler_resources: PodResources | None = None
    env: tuple[tuple[str, str], ...] = ()
    adaptive: AdaptiveConfig | None = None
    gpu_workers: KubernetesGpuConfig | None = None
    idle_timeout_s: int = 0
    resource_timeout_s: int = 300
    scheduler_service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"

    def __post_init__(self) -> None:
        """Check the values; a ConfigError names the key."""
        check_count("n_workers", self.n_workers)
        check_count("threads_per_worker", self.threads_per_worker, 1)
        check_count("idle_timeout_s", self.idle_timeout_s)
        check_count("resource_timeout_s", self.resource_timeout_s, 1)
        if not self.image.strip():
            raise config_error(
                "image",
                self.image,
                "give the worker image, e.g. ghcr.io/you/oceanfields:0.1.0",
                problem="is empty",
            )
        if not _K8S_NAME.match(self.name):
            raise config_error(
                "name",
                self.name,
                "use lowercase a-z, 0-9 and '-', at most 53 characters",
                problem="is not a DaskCluster name",
            )
        check_choice(
            "scheduler_service_type",
            self.scheduler_service_type,
            ("ClusterIP", "NodePort", "LoadBalancer"),
        )


@dataclass(frozen=True, kw_only=True)
class SlurmGpuConfig:
    """Run the jobs on a GPU partition, each worker advertising the resource ``GPU``.

    Attributes
    ----------
    partition : str
        GPU partition (replaces ``queue``).
    gpus_per_job : int
        GPUs per job (``#SBATCH --gres=gpu:N``), shared evenly by the job's workers.
    gres_type : str or None
        GPU type in the gres (``--gres=gpu:a100:N``); None: any.
    """

    partition: str = "gpu"
    gpus_per_job: int = 1
    gres_type: str | None = None

    def __post_init__(self) -> None:
        """Check the values; a ConfigError names the key."""
        check_count("gpus_per_job", self.gpus_per_job, 1)


@dataclass(frozen=True, kw_only=True)
class SlurmConfig:
    """Dask workers as SLURM batch jobs (dask-jobqueue ``SLURMCluster``).

    Options left out (None) are not passed to dask-jobqueue, which then reads its own
    configuration, ``jobqueue.slurm.<option>`` in dask's config (the site's
    ``~/.config/dask/jobqueue.yaml`` or ``/etc/dask/jobqueue.yaml``), as
    ``SLURMCluster()`` itself does. ``cores`` and ``memory`` must be set in one place or
    the other.

    Attributes
    ----------
    queue : str or None
        Partition (``#SBATCH -p``).
    account : str or None
        Account charged (``#SBATCH -A``).
    cores : int or None
        Cores per job (``--cpus-per-task``), shared by its worker processes
        (``jobqueue.slurm.cores``).
    processes : int or None
        Worker processes per job (``jobqueue.slurm.processes``; dask-jobqueue's default
        is about the square root of ``cores``).
    memory : str or None
        Memory per job (dask size string, ``16GiB``; ``#SBATCH --mem``;
        ``jobqueue.slurm.memory``).
    walltime : str or None
        Job time limit (``#SBATCH -t``, ``HH:MM:SS`` or ``D-HH:MM:SS``;
        ``jobqueue.slurm.walltime``).
    job_extra_directives : tuple of str
        More ``#SBATCH`` options, without the ``#SBATCH`` (``--exclusive``).
    worker_extra_args : tuple of str
        More ``dask worker`` arguments.
    job_script_prologue : tuple of str
        Shell lines run before the worker (``module load``, ``source venv/bin/activate``).
    local_directory : str or None
        Worker scratch space on the node (spilled data).
    log_directory : str or None
        Where the jobs' stdout/stderr go.
    interface : str or None
        Network interface of the scheduler and workers (``ib0``).
    python : str or None
        Python on the compute nodes; None: this one.
    jobs : int
        Jobs submitted at start (each runs ``processes`` workers).
    adaptive : AdaptiveConfig or None
        Adaptive bounds, in jobs; None: fixed ``jobs``.
    gpu : SlurmGpuConfig or None
        Run on a GPU partition with GPUs per job.
    """

    type: Literal["slurm"] = "slurm"
    queue: str | None = None
    account: str | None = None
    cores: int | None = None
    processes: int | None = None
    memory: str | None = None
    walltime: str | None = None
    job_extra_directives: tuple[str, ...] = ()
    worker_extra_args: tuple[str, ...] = ()
    job_script_prologue: tuple[str, ...] = ()
    local_directory: str | None = None
    log_directory: str | None = None
    interface: str | None = None
    python: str | None = None
    jobs: int = 1
    adaptive: AdaptiveConfig | None = None
    gpu: SlurmGpuConfig | None = None

    def __post_init__(self) -> None:
        """Check the values given (None: dask's config decides); a ConfigError names the key."""
        check_count("cores", self.cores, 1, allow_none=True)
        check_count("processes", self.processes, 1, allow_none=True)
        check_count("jobs", self.jobs)
        if self.cores is not None and self.processes is not None and self.cores % self.processes:
            raise config_error(
                "cores",
                self.cores,
                "give a multiple of processes",
                problem=f"cannot be split over {self.processes} processes",
            )
        if self.memory is not None:
            try:
                parse_bytes(self.memory)
            except (TypeError, ValueError) as err:
                raise config_error(
                    "memory", self.memory, "write e.g. 16GiB", problem="is not a size"
                ) from err
        if self.walltime is not None and not _WALLTIME.match(self.walltime):
            raise config_error(
                "walltime",
                self.walltime,
                "write e.g. '02:00:00' or '1-00:00:00' (quoted in YAML)",
                problem="is not a SLURM time",
            )
        for name in ("job_extra_directives", "worker_extra_args", "job_script_prologue"):
            check_strings(name, getattr(self, name))
        for line in self.job_extra_directives:
            if not line.startswith("-"):
                raise config_error(
                    "job_extra_directives",
                    line,
                    "write the option only, e.g. '--exclusive' (no '#SBATCH')",
                )
        if self.gpu and self.processes is not None:
            _check_gpu_share(self.gpu.gpus_per_job, self.processes)


@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    """A cluster from a dask-gateway server.

    Attributes
    ----------
    address : str
        Gateway URL; required.
    proxy_address, public_address : str or None
        Scheduler proxy and public URL when they differ from ``address``.
    auth : {"basic", "jupyterhub", "kerberos"} or None
        Authentication by name only; its secrets come from the environment
        (``JUPYTERHUB_API_TOKEN``, ``DASK_GATEWAY__AUTH__KWARGS``). None: dask config
        ``gateway.auth.type``.
    options : tuple of (str, value)
        Cluster options the server offers (a mapping in YAML, e.g. ``worker_cores``,
        ``worker_memory``, ``image``).
    n_workers : int
        Workers at start.
    adaptive : AdaptiveConfig or None
        Adaptive bounds; None: fixed ``n_workers``.
    """

    type: Literal["gateway"] = "gateway"
    address: str
    proxy_address: str | None = None
    public_address: str | None = None
    auth: Literal["basic", "jupyterhub", "kerberos"] | None = None
    options: tuple[tuple[str, str | int | float | bool], ...] = ()
    n_workers: int = 2
    adaptive: AdaptiveConfig | None = None

    def __post_init__(self) -> None:
        """Check the values; a ConfigError names the key."""
        check_count("n_workers", self.n_workers)
        if self.auth is not None:
            check_choice("auth", self.auth, _GATEWAY_AUTH)
        if not self.address.startswith(("http://", "https://")):
            raise config_error(
                "address",
                self.address,
                "give the gateway's URL, e.g. https://gateway.example.org",
                problem="is not an http(s):// URL",
            )


ClusterConfig = LocalConfig | SchedulerConfig | KubernetesConfig | SlurmConfig | GatewayConfig
_CONFIGS: dict[str, type] = {
    "gateway": GatewayConfig,
    "kubernetes": KubernetesConfig,
    "local": LocalConfig,
    "scheduler": SchedulerConfig,
    "slurm": SlurmConfig,
}
_CONVERTERS = {"env": _pairs, "options": _pairs}


def _nested_class(hint: Any) -> type | None:
    """Return the config dataclass inside a ``X | None`` hint, if any."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    found = [o for o in options if dataclasses.is_dataclass(o)]
    return found[0] if found else None


def _build_section(cls: type, values: Any, *, where: str, section: str) -> Any:
    """``build_config`` that also builds nested option mappings and names missing keys."""
    if isinstance(values, Mapping):
        hints = typing.get_type_hints(cls)
        values = dict(values)
        for f in dataclasses.fields(cls):
            nested = _nested_class(hints[f.name])
            if nested is not None and values.get(f.name) is not None:
                values[f.name] = _build_section(
                    nested, values[f.name], where=where, section=f"{section}.{f.name}"
                )
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required and f.name not in values:
                raise ConfigError(
                    f"{where}: {section}.{f.name}: required key missing "
                    f"(see clusters/{values.get('type', 'local')}.yaml)."
                )
    names = {f.name for f in dataclasses.fields(cls)}
    converters = {k: c for k, c in _CONVERTERS.items() if k in names}
    return build_config(cls, values, where=where, section=section, converters=converters)


def load_cluster_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | None = None,
) -> ClusterConfig:
    """Read and validate a cluster file (or mapping); None gives the local default.

    Parameters
    ----------
    source : path or mapping, optional
        A YAML file with a top-level ``cluster`` mapping, or that mapping itself.

    Returns
    -------
    LocalConfig, SchedulerConfig, KubernetesConfig, SlurmConfig or GatewayConfig
        The validated, frozen configuration.

    Raises
    ------
    ConfigError
        Naming the file and the dotted key when the file is malformed, the type unknown,
        a key unknown or missing, or a value wrong.

    See Also
    --------
    pipeline.clusters.deploy.describe_submission : what the file would submit.

    Examples
    --------
    >>> load_cluster_config({"cluster": {"type": "local", "n_workers": 2}}).n_workers
    2
    >>> load_cluster_config({"cluster": {"type": "local", "workers": 2}})
    Traceback (most recent call last):
    ...
    pipeline.errors.ConfigError: <mapping>: cluster.workers: unknown key; valid: ...
    >>> load_cluster_config({"cluster": {"type": "kubernetes", "n_workers": 2}})
    Traceback (most recent call last):
    ...
    pipeline.errors.ConfigError: <mapping>: cluster.image: required key missing ...
    """
    if source is None:
        return LocalConfig()
    doc, where = read_yaml(source)
    if not isinstance(doc.get("cluster"), Mapping):
        raise ConfigError(
            f"{where}: expected a top-level 'cluster' mapping, e.g. "
            "'cluster: {type: local, n_workers: 2}'."
        )
    spec = dict(doc["cluster"])
    kind = spec.get("type", "local")
    if kind not in _CONFIGS:
        raise ConfigError(
            f"{where}: cluster.type: unknown type {kind!r}; valid: {', '.join(sorted(_CONFIGS))}"
        )
    config = _build_section(_CONFIGS[kind], spec, where=where, section="cluster")
    if isinstance(config, SchedulerConfig) and not (config.address or config.scheduler_file):
        raise ConfigError(f"{where}: cluster: give 'address' or 'scheduler_file'.")
    return config
