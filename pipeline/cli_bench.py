"""``oceanfields bench``: the scaling benchmark on a cluster file.

Registered on the main command group by :mod:`pipeline.cli`; the measurements live in
:mod:`pipeline.scaling`. Only the CLI prints.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click

__all__ = ["bench"]


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
@click.option("--out", default="scaling.json", show_default=True, help="JSON to write; "
              "the plot goes next to it (.png).")  # fmt: skip
@click.option("--workers", default="1,2", show_default=True, callback=_ints,
              help="Worker counts, comma-separated.")  # fmt: skip
@click.option("--parts", default="matchup,train,fields,images", show_default=True,
              help="Parts to measure, comma-separated.")  # fmt: skip
@click.option("--scale", default=1.0, show_default=True, type=float,
              help="Multiply each unit of work (points, rows, months, images).")  # fmt: skip
@click.option("--repeats", default=1, show_default=True, type=int, help="Best of N runs.")
@click.option("--root", default=None, help="Work folder (demo world, outputs); on storage "
              "the workers share for remote clusters. Default: a temporary folder.")  # fmt: skip
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
    from pipeline.scaling import ScalingConfig, cost_table, plot_scaling, run_scaling

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
