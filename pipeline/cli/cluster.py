"""``oceanfields cluster ...``: check a cluster file and show what it would submit.

Registered on the main command group by :mod:`pipeline.cli.main`. Only the CLI prints.
"""

from __future__ import annotations

import click

__all__ = ["cluster"]


@click.group()
def cluster() -> None:
    """Cluster files (clusters/*.yaml): check them before a run."""


@cluster.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def check(file: str) -> None:
    """Validate cluster FILE and print what it would submit, without a live cluster.

    Kubernetes: the DaskCluster (and GPU DaskWorkerGroup, DaskAutoscaler) manifests,
    validated against the CRDs of the installed dask-kubernetes. SLURM: the job script.
    Gateway: the request. Local and scheduler: a one-line summary. An invalid file
    exits non-zero with one line naming the file and the field.
    """
    from pipeline.clusters.config import load_cluster_config
    from pipeline.clusters.deploy import describe_submission
    from pipeline.errors import ConfigError

    config = load_cluster_config(file)
    try:
        text = describe_submission(config)
    except ConfigError as err:
        raise ConfigError(f"{file}: {err}") from err
    click.echo(text.rstrip("\n"))
    click.echo(f"OK: {file} is a valid cluster file.", err=True)
