"""``oceanfields bench``: the scaling benchmark on a cluster file.

Registered on the main command group by :mod:`pipeline.cli.main`; the measurements live in
:mod:`pipeline.scaling`; the plot and the cost table of a record are made here. Only the
CLI prints.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

__all__ = ["bench", "cost_table", "plot_scaling"]


def _ints(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError as err:
        raise click.BadParameter(f"{value!r}: give comma-separated integers, e.g. 1,2,4") from err
    if not counts:
        raise click.BadParameter(f"{value!r}: give at least one worker count")
    return counts


@click.command("bench")
@click.argument("cluster_file", type=click.Path(dir_okay=False, exists=True))
@click.option(
    "--out",
    default="scaling.json",
    show_default=True,
    help="JSON to write; the plot goes next to it (.png).",
)
@click.option(
    "--workers",
    default="1,2",
    show_default=True,
    callback=_ints,
    help="Worker counts, comma-separated.",
)
@click.option(
    "--parts",
    default="matchup,train,fields,images",
    show_default=True,
    help="Parts to measure, comma-separated.",
)
@click.option(
    "--scale",
    default=1.0,
    show_default=True,
    type=float,
    help="Multiply each unit of work (points, rows, months, images).",
)
@click.option("--repeats", default=1, show_default=True, type=int, help="Best of N runs.")
@click.option(
    "--root",
    default=None,
    help="Work folder (demo world, outputs); on storage "
    "the workers share for remote clusters. Default: a temporary folder.",
)
def bench(
    cluster_file: str,
    out: str,
    workers: tuple[int, ...],
    parts: str,
    scale: float,
    repeats: int,
    root: str | None,
) -> None:
    """Strong and weak scaling of matchup, training, fields and images on CLUSTER_FILE.

    Local files get a LocalCluster per worker count; Kubernetes, SLURM and gateway
    clusters are scaled to each count. Writes the JSON and a PNG plot, prints the
    efficiencies and the cost model of global grids.
    """
    from pipeline.scaling import ScalingConfig, run_scaling

    base = ScalingConfig()
    config = ScalingConfig(
        workers=workers,
        parts=tuple(p.strip() for p in parts.split(",") if p.strip()),
        points=max(1, round(base.points * scale)),
        rows=max(1, round(base.rows * scale)),
        months=max(1, round(base.months * scale)),
        images=max(1, round(base.images * scale)),
        repeats=repeats,
    )
    with tempfile.TemporaryDirectory(prefix="oceanfields-bench-") as tmp:
        record = run_scaling(cluster_file, root or tmp, config=config)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    plot_scaling(record, path.with_suffix(".png"))
    for part, modes in record["efficiencies"].items():
        line = "  ".join(
            f"{mode} " + " ".join(f"E({k})={e:.2f}" for k, e in eff.items())
            for mode, eff in modes.items()
        )
        click.echo(f"{part:<8} {line}")
    click.echo(cost_table(record))
    click.echo(f"Written {path} and {path.with_suffix('.png')}")


def cost_table(record: Mapping[str, Any]) -> str:
    """Format the cost model of a record as a plain-text table (one row per grid).

    Parameters
    ----------
    record : mapping
        The result of :func:`run_scaling`.

    Returns
    -------
    str
        Grid, cells, storage (GiB) and wall hours per worker count; a last row with the
        matchup hours per million points.
    """
    model = record["cost_model"]
    workers = model["workers"]
    head = f"{'grid':<16}{'cells':>14}{'GiB':>10}" + "".join(f"{f'h@{k}':>10}" for k in workers)
    lines = [head]
    for name, row in model["grids"].items():
        hours = "".join(f"{row['wall_hours'][str(k)]:>10.3g}" for k in workers)
        lines.append(f"{name:<16}{row['cells']:>14.3g}{row['storage_gib']:>10.3g}{hours}")
    if "matchup" in model:
        per = model["matchup"]["hours_per_million_points"]
        lines.append(f"{'matchup 1e6 pts':<40}" + "".join(f"{per[str(k)]:>10.3g}" for k in workers))
    return "\n".join(lines)


def plot_scaling(record: Mapping[str, Any], path: str | os.PathLike[str]) -> str:
    """Plot time and efficiency vs workers per part (matplotlib, Agg) to ``path``.

    Parameters
    ----------
    record : mapping
        The result of :func:`run_scaling`.
    path : path
        PNG file to write.

    Returns
    -------
    str
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = list(record["efficiencies"])
    fig, axes = plt.subplots(2, len(parts), figsize=(3.2 * len(parts), 5.5), squeeze=False)
    rows = record["measurements"]
    styles = {"strong": "o-", "weak": "s--"}
    for j, part in enumerate(parts):
        for mode, style in styles.items():
            mine = sorted(
                (r for r in rows if r["part"] == part and r["mode"] == mode),
                key=lambda r: r["workers"],
            )
            if not mine:
                continue
            ks = [r["workers"] for r in mine]
            axes[0, j].plot(ks, [r["seconds"] for r in mine], style, label=mode)
            eff = record["efficiencies"][part][mode]
            axes[1, j].plot(ks, [eff[str(k)] for k in ks], style, label=mode)
        axes[0, j].set_title(part)
        axes[0, j].set_ylabel("wall time (s)")
        axes[1, j].set_ylabel("efficiency")
        top = max(e for m in record["efficiencies"][part].values() for e in m.values())
        axes[1, j].set_ylim(0, max(1.2, 1.1 * top))
        axes[1, j].axhline(1.0, color="grey", lw=0.5)
        for ax in axes[:, j]:
            ax.set_xlabel("workers")
            ax.set_xscale("log", base=2)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)
