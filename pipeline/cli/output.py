"""What the commands print and the runs they start, for every command module.

The reader summaries, the skill table, the fields-write progress bar and the run on a
client live here once: :mod:`~pipeline.cli.main` and :mod:`~pipeline.cli.demo` both import
this module and never each other (``main`` registers the demo's commands). Only the CLI
prints.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

__all__ = [
    "CLUSTER_HELP",
    "RegionBar",
    "echo_skill",
    "echo_summary",
    "run_with",
    "write_read_result",
]

#: Help text of every ``--cluster`` option.
CLUSTER_HELP = "Cluster file (clusters/*.yaml); default: a LocalCluster on this machine."


def _progress_compute(client: Any) -> Any:
    """Return a ``compute(*collections)`` that shows a progress bar on the cluster."""
    from dask.distributed import progress

    def compute(*collections: Any) -> tuple[Any, ...]:
        futures = client.compute(list(collections))
        if sys.stderr.isatty():
            progress(futures, notebook=False)
        return tuple(client.gather(futures))

    return compute


def echo_summary(summary: Any, *, indent: str = "  ") -> None:
    """Print a reader's counts (read = accepted + quarantined), extents and top reasons.

    Parameters
    ----------
    summary : pipeline.ingest.IngestSummary
        What :func:`write_read_result` returns.
    indent : str
        Prefix of every line.
    """
    s = summary
    click.echo(
        f"{indent}{s.files} file(s): {s.rows_read} rows read = {s.rows_accepted} accepted"
        f" + {s.rows_quarantined} quarantined"
        + (f"; {s.files_failed} file(s) unreadable" if s.files_failed else "")
        + ("" if s.reconciles else "  (COUNTS DO NOT RECONCILE)")
    )
    for name, (low, high) in s.extents.items():
        click.echo(f"{indent}  {name}: {low} .. {high}")
    for reason, n in list(s.by_reason.items())[:10]:
        click.echo(f"{indent}  {n:>7}  {reason}")
    if len(s.by_reason) > 10:
        click.echo(f"{indent}  ... {len(s.by_reason) - 10} more reasons in quarantine.parquet")


def write_read_result(result: Any, out: str, table: str, client: Any) -> Any:
    """Write a reader's result under OUT on the cluster, with a progress bar on a terminal.

    Parameters
    ----------
    result : pipeline.sources.table.ReadResult
        Accepted rows and quarantine of a reader.
    out : str
        Output folder or URL.
    table : str
        Name of the accepted table (``objects`` or ``particles``).
    client : dask.distributed.Client

    Returns
    -------
    pipeline.ingest.IngestSummary
        The counts, for :func:`echo_summary`.
    """
    from pipeline.ingest import write_ingest

    return write_ingest(result, out, table=table, compute=_progress_compute(client))


def run_with(client: Any, config: Any, out: str | None, steps: Sequence[str] | None) -> Any:
    """Run steps of a run config on a client, printing each step and the fields progress.

    Parameters
    ----------
    client : dask.distributed.Client
    config : pipeline.run.config.RunConfig
    out : str, optional
        Output URL (default: the config's ``out``).
    steps : sequence of str, optional
        Steps to run (default all, skipping those already done).

    Returns
    -------
    pipeline.run.steps.RunSummary
    """
    from pipeline.run.steps import run_steps

    bar = RegionBar()
    try:
        return run_steps(config, out=out, steps=steps, client=client, echo=click.echo, progress=bar)
    finally:
        bar.close()


class RegionBar:
    """A tqdm bar over the regions of the fields write (only on a terminal)."""

    def __init__(self) -> None:
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        """Show ``done`` of ``total`` regions written."""
        if not sys.stderr.isatty():
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="fields regions", unit="region")
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        """Close the bar, if one was shown."""
        if self.bar is not None:
            self.bar.close()


def echo_skill(metrics: dict[str, Any]) -> None:
    """Print the test / block-CV / random-CV skill of the model and the baselines.

    Parameters
    ----------
    metrics : dict
        A run's ``metrics.json`` (nothing is printed when empty); its noise ceiling, when
        there is one, is the last row.
    """
    if not metrics:
        return
    click.echo("\nSkill (transformed space; test = held-out spatial blocks):")
    click.echo(
        f"  {'':<16}{'test mv_mse':>12}{'test R2':>9}{'block-CV mv_mse':>17}"
        f"{'random-CV mv_mse':>18}"
    )

    def row(name: str, entry: dict[str, Any]) -> None:
        test = entry.get("test", {})
        cv = entry.get("cv", {}).get("mean", {})
        rcv = entry.get("random_cv", {}).get("mean", {})
        click.echo(
            f"  {name:<16}{_num(test.get('mv_mse')):>12}{_num(test.get('r2_mean')):>9}"
            f"{_num(cv.get('mv_mse')):>17}{_num(rcv.get('mv_mse')):>18}"
        )

    row("model", metrics.get("model", {}))
    for name, entry in metrics.get("baselines", {}).items():
        row(name, entry)
    if "noise_ceiling" in metrics:
        row("noise ceiling", metrics["noise_ceiling"])


def _num(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3f}"
