"""Turn a cluster file (``clusters/*.yaml``) into a ``dask.distributed.Client``.

A cluster file is YAML with one top-level ``cluster`` mapping whose ``type`` picks the
deployment; the other keys are that deployment's options::

    cluster:
      type: local            # LocalCluster on this machine (the default)
      n_workers: 2
      threads_per_worker: 1
      memory_limit: 4GiB
      processes: true

    cluster:
      type: scheduler        # connect to a running scheduler
      address: tcp://127.0.0.1:8786

Defaults live only in the config dataclasses below; unknown keys are errors that list
the valid ones. No credential is ever read from or written to these files.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from dask.distributed import Client, LocalCluster

from pipeline.config import build_config, read_yaml
from pipeline.errors import ConfigError

__all__ = ["LocalConfig", "SchedulerConfig", "cluster_client", "load_cluster_config"]

logger = logging.getLogger(__name__)


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


_CONFIGS: dict[str, type] = {"local": LocalConfig, "scheduler": SchedulerConfig}


def load_cluster_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | None = None,
) -> LocalConfig | SchedulerConfig:
    """Read and validate a cluster file (or mapping); None gives the local default.

    Parameters
    ----------
    source : path or mapping, optional
        A YAML file with a top-level ``cluster`` mapping, or that mapping itself.

    Returns
    -------
    LocalConfig or SchedulerConfig
        The validated, frozen configuration.

    Raises
    ------
    ConfigError
        Naming the file and the key when the file is malformed, the type unknown or a
        key invalid.

    Examples
    --------
    >>> load_cluster_config({"cluster": {"type": "local", "n_workers": 2}}).n_workers
    2
    >>> load_cluster_config({"cluster": {"type": "local", "workers": 2}})
    Traceback (most recent call last):
    ...
    pipeline.errors.ConfigError: <mapping>: cluster.workers: unknown key; valid: ...
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
    config = build_config(_CONFIGS[kind], spec, where=where, section="cluster")
    if isinstance(config, SchedulerConfig) and not (config.address or config.scheduler_file):
        raise ConfigError(f"{where}: cluster: give 'address' or 'scheduler_file'.")
    return config


@contextlib.contextmanager
def cluster_client(
    source: str | os.PathLike[str] | Mapping[str, Any] | None = None,
) -> Iterator[Client]:
    """Start (or connect to) the cluster a file describes and yield a ``Client``.

    Everything started is closed on exit. Scripts that use a local cluster with
    processes need the ``if __name__ == "__main__":`` guard.

    Parameters
    ----------
    source : path or mapping, optional
        Cluster file or mapping (see :func:`load_cluster_config`); None: local default.

    Yields
    ------
    dask.distributed.Client
        Connected client; ``client.dashboard_link`` is the dashboard.
    """
    config = load_cluster_config(source)
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
