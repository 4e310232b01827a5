"""Clusters: cluster files to a ``dask.distributed.Client``, and what each would submit.

:mod:`~pipeline.clusters.config` validates the files (local, scheduler, kubernetes,
slurm, gateway); :mod:`~pipeline.clusters.deploy` builds and starts what they describe
(manifests, job script, gateway request); :mod:`~pipeline.clusters.client` yields a
connected client.
"""

from __future__ import annotations

from pipeline.clusters.client import (
    cluster_client,
)
from pipeline.clusters.config import (
    AdaptiveConfig,
    ClusterConfig,
    GatewayConfig,
    KubernetesConfig,
    KubernetesGpuConfig,
    LocalConfig,
    PodResources,
    ResourceQuantities,
    SchedulerConfig,
    SlurmConfig,
    SlurmGpuConfig,
    load_cluster_config,
)
from pipeline.clusters.deploy import (
    describe_submission,
    gateway_request,
    kubernetes_manifests,
    slurm_job_kwargs,
    slurm_job_script,
    start_cluster,
    validate_dask_resource,
)

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
    "cluster_client",
    "describe_submission",
    "gateway_request",
    "kubernetes_manifests",
    "load_cluster_config",
    "slurm_job_kwargs",
    "slurm_job_script",
    "start_cluster",
    "validate_dask_resource",
]
