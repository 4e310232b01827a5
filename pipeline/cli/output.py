"""What the commands print and the runs they start, for every command module.

The reader summaries, the skill table, the fields-write progress bar and the run on a
client live here once: :mod:`~pipeline.cli.main` and :mod:`~pipeline.cli.demo` both import
this module and never each other (``main`` registers the demo's commands). Only the CLI
prints.
"""

from __future__ import annotations

import math
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
    """Print the skill table: plain MSE first, mv_mse beside it, CV variants, ceiling, honesty.

    Parameters
    ----------
    metrics : dict
        A run's ``metrics.json`` (nothing is printed when empty), with ``honesty`` merged
        in when the fields step ran the CV honesty check. A baseline's row says ``beats``
        when the block-bootstrap 90 % interval of the model's test MSE minus the
        baseline's excludes 0, ``tie`` when it holds 0 and ``worse`` when the model is
        worse.
    """
    if not metrics:
        return
    click.echo(
        "\nSkill (transformed space; MSE = mean over targets of the per-target MSE; "
        "test = held-out spatial blocks):"
    )
    click.echo(
        f"  {'':<16}{'test MSE':>10}{'mv_mse':>9}{'R2':>8}{'block-CV MSE':>14}"
        f"{'random-CV MSE':>15}{'basins-CV MSE':>15}   model vs baseline (90 % block bootstrap)"
    )
    comparisons = metrics.get("comparisons", {})

    def row(name: str, entry: dict[str, Any]) -> None:
        test = entry.get("test") or {}
        cv = entry.get("cv", {}).get("mean", {})
        rcv = entry.get("random_cv", {}).get("mean", {})
        bcv = entry.get("basins_cv", {}).get("mean", {})
        verdict = ""
        diff = comparisons.get(name, {}).get("test", {}).get("mse")
        if diff:
            word = "beats" if diff["beats"] else ("worse" if diff["worse"] else "tie")
            verdict = f"   {word}: {diff['diff']:+.4f} [{diff['lo']:+.4f}, {diff['hi']:+.4f}]"
        click.echo(
            f"  {name:<16}{_num(test.get('mse'), 4):>10} {_num(test.get('mv_mse')):>8}"
            f" {_num(test.get('r2_mean')):>7}{_num(cv.get('mse'), 4):>14}"
            f"{_num(rcv.get('mse'), 4):>15}{_num(bcv.get('mse'), 4):>15}{verdict}"
        )

    row("model", metrics.get("model", {}))
    for name, entry in metrics.get("baselines", {}).items():
        row(name, entry)
    if "noise_ceiling" in metrics:
        ceiling = metrics["noise_ceiling"]
        subset = ceiling.get("targets")
        row("noise ceiling*" if subset else "noise ceiling", ceiling)
        excess = metrics.get("excess_over_ceiling", {})
        ratio = excess.get("mse_ratio")
        if subset:
            click.echo(
                f"  * over {len(subset)} of {len(metrics.get('targets', subset))} targets "
                f"(no truth for {', '.join(ceiling.get('without_truth', []))}); the model's "
                f"test MSE over the same targets: {_num(excess.get('model_mse'), 4)}, "
                f"{_num(ratio, 2)} x the ceiling"
            )
        elif ratio is not None:
            click.echo(f"  model test MSE / ceiling MSE: {_num(ratio, 2)}")
    else:
        click.echo("  noise ceiling: - (no truth for these targets)")
    weak = metrics.get("weak_targets", {}).get("flagged")
    if weak:
        click.echo(
            f"  block-CV R2 below {metrics['weak_targets']['threshold_r2']}: {', '.join(weak)}"
        )
    cover = metrics.get("intervals", {}).get("test")
    if cover:
        layers = ", ".join(
            f"{k} {v['mean']:.2f}" for k, v in cover.get("by", {}).get("layer", {}).items()
        )
        click.echo(
            f"  {metrics['intervals']['nominal']:.0%} intervals cover {cover['mean']:.2f} of test "
            f"rows (all targets at once {cover['joint']:.2f}; by layer {layers})"
        )
    folds = metrics.get("intervals", {}).get("cv")
    if folds:
        parts = []
        for by in ("layer", "basin"):
            groups = folds.get("by", {}).get(by, {})
            shown = [
                f"{k} {v['mean']:.2f}"
                + (
                    f" ({v['blocks']} block{'s' if v['blocks'] != 1 else ''})"
                    if by == "basin" and "blocks" in v
                    else ""
                )
                for k, v in groups.items()
                if not v.get("small")
            ]
            if shown:
                parts.append(f"by {by} {', '.join(shown)}")
        click.echo(
            f"  across the {folds['folds']} CV folds (each calibrated without its fold): "
            f"{folds['mean']:.2f} of {folds['n']} rows ({'; '.join(parts)})"
        )
    oracle = metrics.get("noise_ceiling", {}).get("intervals")
    if oracle:
        from pipeline.demo.oracle import oracle_line

        click.echo("  " + oracle_line(metrics))
    honesty = metrics.get("honesty")
    if honesty:
        from pipeline.demo.honesty import honesty_line

        click.echo("  " + honesty_line(honesty))


def _num(value: Any, digits: int = 3) -> str:
    if value is None or not math.isfinite(float(value)):
        return "-"
    return f"{float(value):.{digits}f}"
