"""A cluster file to a connected ``dask.distributed.Client`` (started and closed here)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from dask.distributed import Client, LocalCluster

from pipeline.clusters.config import (
    GatewayConfig,
    KubernetesConfig,
    SchedulerConfig,
    SlurmConfig,
    load_cluster_config,
)
from pipeline.clusters.deploy import start_cluster

__all__ = ["cluster_client"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def cluster_client(
    source: str | os.PathLike[str] | Mapping[str, Any] | None = None,
) -> Iterator[Client]:
    """Start (or connect to) the cluster a file describes and yield a ``Client``.

    Everything started is closed on exit: the LocalCluster, the DaskCluster resource
    (with its worker groups and autoscaler), the SLURM jobs, the gateway cluster.
    Scripts that use a local cluster with processes need the
    ``if __name__ == "__main__":`` guard.

    Parameters
    ----------
    source : path or mapping, optional
        Cluster file or mapping (see
        :func:`~pipeline.clusters.config.load_cluster_config`); None: local default.

    Yields
    ------
    dask.distributed.Client
        Connected client; ``client.dashboard_link`` is the dashboard.

    Raises
    ------
    ConfigError
        For an invalid file, or when the deployment's extra is not installed (names
        the ``pip install 'oceanfields[...]'`` to run).
    """
    config = load_cluster_config(source)
    if isinstance(config, KubernetesConfig | SlurmConfig | GatewayConfig):
        with start_cluster(config) as cluster, Client(cluster) as client:
            yield client
        return
    if isinstance(config, SchedulerConfig):
        target = config.scheduler_file or config.address
        logger.info("connecting to scheduler %s", target)
        if config.scheduler_file:
            client = Client(scheduler_file=config.scheduler_file)
        else:
            client = Client(config.address)
        with client:
            yield client
        return
    n_workers = config.n_workers or os.cpu_count() or 1
    logger.info(
        "starting LocalCluster: %d worker(s) x %d thread(s), memory_limit=%s",
        n_workers,
        config.threads_per_worker,
        config.memory_limit,
    )
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=config.threads_per_worker,
            memory_limit=config.memory_limit,
            processes=config.processes,
            dashboard_address=config.dashboard_address,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
