"""The ``oceanfields`` command line: each step of the flow, and the demo.

Only this module prints; progress bars and the dashboard link are shown here.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from pipeline import __version__
from pipeline.cli.bench import bench as bench_command
from pipeline.cli.cluster import cluster as cluster_group
from pipeline.cli.images import images as images_group
from pipeline.errors import OceanfieldsError

__all__ = ["main"]

logger = logging.getLogger(__name__)

_CLUSTER_HELP = "Cluster file (clusters/*.yaml); default: a LocalCluster on this machine."


class _Group(click.Group):
    """Click group that turns oceanfields errors into one clear line, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OceanfieldsError as err:
            raise click.ClickException(f"{type(err).__name__}: {err}") from err


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="oceanfields")
@click.option("-v", "--verbose", count=True, help="More log output (-v INFO, -vv DEBUG).")
def main(verbose: int) -> None:
    """oceanfields: plankton and particle imaging data into global ocean fields."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    import distributed  # noqa: F401  (configures its loggers on import; quiet them after)

    for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.core"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


# --------------------------------------------------------------------------- helpers


def _progress_compute(client: Any) -> Any:
    """Return a ``compute(*collections)`` that shows a progress bar on the cluster."""
    from dask.distributed import progress

    def compute(*collections: Any) -> tuple[Any, ...]:
        futures = client.compute(list(collections))
        if sys.stderr.isatty():
            progress(futures, notebook=False)
        return tuple(client.gather(futures))

    return compute


def _echo_summary(summary: Any, *, indent: str = "  ") -> None:
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


def _echo_environment(info: dict[str, Any], *, indent: str = "  ") -> None:
    for key, value in info.items():
        click.echo(f"{indent}{key}: {value}")


def _write_read_result(result: Any, out: str, table: str, client: Any) -> Any:
    from pipeline.ingest import write_ingest

    return write_ingest(result, out, table=table, compute=_progress_compute(client))


# --------------------------------------------------------------------------- demo-data


@main.command("demo-data")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--resolution", default=1.0, show_default=True, help="Grid step, degrees.")
@click.option(
    "--years", default="2020", show_default=True, help="Comma-separated years, e.g. 2019,2020."
)
@click.option("--profiles", default=300, show_default=True, help="Number of UVP profiles.")
@click.option("--images", default=3000, show_default=True, help="About this many images.")
@click.option("--seed", default=0, show_default=True, help="Random seed (same seed, same world).")
def demo_data(out: str, resolution: float, years: str, profiles: int, images: int, seed: int):
    """Generate the demo world (real EcoPart/EcoTaxa/Copernicus formats + truth) in OUT."""
    world = _generate(out, resolution, _parse_years(years), profiles, images, seed)
    _echo_world(world)


def _parse_years(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(y) for y in text.split(",") if y.strip())
    except ValueError as err:
        raise click.BadParameter(f"{text!r}: expected years like 2020 or 2019,2020") from err


def _generate(
    out: str, resolution: float, years: Sequence[int], profiles: int, images: int, seed: int
) -> Any:
    from pipeline.demo import generate_demo_world

    t0 = time.perf_counter()
    click.echo(
        f"Generating the demo world in {out} ({resolution} deg, years {list(years)}, "
        f"{profiles} profiles, ~{images} images, seed {seed}) ..."
    )
    world = generate_demo_world(
        out,
        resolution=resolution,
        years=tuple(years),
        n_profiles=profiles,
        n_images=images,
        seed=seed,
    )
    click.echo(f"  done in {time.perf_counter() - t0:.1f} s")
    return world


def _echo_world(world: Any) -> None:
    info = world.to_dict()
    click.echo(
        f"Demo world: {info.get('n_profiles')} profiles, {info.get('n_objects')} objects, "
        f"{info.get('n_images')} images"
    )
    for name, path in info.get("paths", {}).items():
        click.echo(f"  {name:<18} {path}")


# --------------------------------------------------------------------------- run


def _run(
    config: Any, out: str | None, cluster_file: str | None, steps: Sequence[str] | None
) -> Any:
    """Run steps of a run config on a cluster, printing progress and the dashboard link."""
    from pipeline.clusters.client import cluster_client

    with cluster_client(cluster_file) as client:
        click.echo(f"Dask dashboard: {client.dashboard_link}")
        return _run_with(client, config, out, steps)


def _run_with(client: Any, config: Any, out: str | None, steps: Sequence[str] | None) -> Any:
    from pipeline.run.steps import run_steps

    bar = _RegionBar()
    try:
        return run_steps(config, out=out, steps=steps, client=client, echo=click.echo, progress=bar)
    finally:
        bar.close()


class _RegionBar:
    """A tqdm bar over the regions of the fields write (only on a terminal)."""

    def __init__(self) -> None:
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if not sys.stderr.isatty():
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="fields regions", unit="region")
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _echo_skill(metrics: dict[str, Any]) -> None:
    """Print the test / block-CV / random-CV skill of the model and the baselines."""
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


@main.command("run")
@click.argument("config_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", default=None, help="Output folder or URL (default: 'out:' of the file).")
@click.option("--cluster", "cluster_file", default=None, help=_CLUSTER_HELP)
@click.option(
    "--step",
    "steps",
    multiple=True,
    type=click.Choice(["targets", "matchup", "train", "fields", "report"]),
    help="Run only this step (repeatable); default all, skipping those already done.",
)
def run_command(
    config_file: str, out: str | None, cluster_file: str | None, steps: tuple[str, ...]
) -> None:
    """Run CONFIG_FILE: targets, matchup, block-CV training, fields, report.

    Writes under the output URL: targets.parquet, matchup.parquet, model/,
    metrics.json, fields.zarr and report/. Steps already finished with the same inputs
    are skipped; an interrupted fields write resumes where it stopped.
    """
    from pipeline.run.config import load_run_config

    config = load_run_config(config_file)
    summary = _run(config, out, cluster_file, steps or None)
    _echo_skill(summary.metrics)
    click.echo(f"\nEverything is under {summary.out}/ (report: {summary.out}/report/index.html)")


def _step_command(step: str) -> click.Command:
    @click.command(step, help=f"Run only the '{step}' step of CONFIG_FILE (see 'run').")
    @click.argument("config_file", type=click.Path(exists=True, dir_okay=False))
    @click.option("--out", default=None, help="Output folder or URL.")
    @click.option("--cluster", "cluster_file", default=None, help=_CLUSTER_HELP)
    def command(config_file: str, out: str | None, cluster_file: str | None) -> None:
        from pipeline.run.config import load_run_config

        summary = _run(load_run_config(config_file), out, cluster_file, [step])
        if step == "train":
            _echo_skill(summary.metrics)

    return command


for _name in ("targets", "matchup", "train", "fields", "report"):
    main.add_command(_step_command(_name))


# --------------------------------------------------------------------------- demo


@main.command()
@click.option(
    "--out", default="demo-out", show_default=True, help="Output folder (local path or URL)."
)
@click.option("--resolution", default=1.0, show_default=True, help="Grid step, degrees.")
@click.option("--years", default="2020", show_default=True, help="Comma-separated years.")
@click.option("--profiles", default=300, show_default=True, help="Number of UVP profiles.")
@click.option("--images", default=3000, show_default=True, help="About this many images.")
@click.option("--seed", default=0, show_default=True, help="Random seed.")
@click.option(
    "--image-epochs",
    default=12,
    show_default=True,
    help="Most epochs of the demo's image classifier.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="A fast tour: 3 CV folds, at most 200 boosting rounds, the climatology "
    "baseline only (the run files say so).",
)
@click.option("--cluster", "cluster_file", default=None, help=_CLUSTER_HELP)
def demo(
    out: str,
    resolution: float,
    years: str,
    profiles: int,
    images: int,
    seed: int,
    image_epochs: int,
    quick: bool,
    cluster_file: str | None,
) -> None:
    """Run oceanfields end to end on the demo world (LocalCluster, local files).

    Generates the world in OUT/world (reused when already there with the same
    parameters), reads every entry of the demo catalog through the readers and writes
    the canonical tables with their quarantine under OUT/tables, then the image path
    (OUT/images: morphological particle types, a CNN trained on the validated images,
    every image classified on the cluster, the consistency report), then the year-1
    chain (OUT/run.yaml: targets incl. the particle types, matchup, block-CV training,
    fields, report) into OUT/run and the year-2 chain (OUT/run-year2.yaml: plankton groups
    in 0-200 m from the classifier's labels) into OUT/run-year2, printing the skill
    tables. A finished chain is not redone.
    """
    from pipeline.catalog import list_entries, open_catalog, read_entry
    from pipeline.cli.images import demo_images
    from pipeline.clusters.client import cluster_client
    from pipeline.run.config import load_run_config
    from pipeline.sources.copernicus import describe_environment
    from pipeline.sources.table import ReadResult

    root = f"{out.rstrip('/')}/world"
    params = {
        "resolution": resolution,
        "years": list(_parse_years(years)),
        "n_profiles": profiles,
        "n_images": images,
        "seed": seed,
    }
    if _same_world(root, params):
        click.echo(f"Demo world already in {root} with these parameters; reusing it.")
    else:
        _echo_world(_generate(root, resolution, params["years"], profiles, images, seed))

    catalog = open_catalog("demo", root=root)
    with cluster_client(cluster_file) as client:
        click.echo(f"Dask dashboard: {client.dashboard_link}")
        for entry in list_entries(catalog):
            name = entry["name"]
            first = (entry.get("description") or "").strip().splitlines()
            click.echo(f"\n[{name}] {first[0] if first else ''}")
            result = read_entry(catalog, name)
            if isinstance(result, ReadResult):
                table = "objects" if "ecotaxa" in name else "particles"
                dest = f"{out.rstrip('/')}/tables/{name}"
                summary = _write_read_result(result, dest, table, client)
                _echo_summary(summary)
                click.echo(f"  written: {dest}/{table}.parquet, {dest}/quarantine.parquet")
            elif hasattr(result, "data_vars"):
                _echo_environment(describe_environment(result))
            else:
                click.echo(f"  {type(result).__name__}: {_short(result)}")
        made = demo_images(
            out, read_entry(catalog, "ecotaxa").accepted, client, epochs=image_epochs
        )
        config_file = _write_demo_run_config(out, root, types=made["types"], quick=quick)
        click.echo(
            f"\nThe year-1 chain on the demo world ({config_file}): particle size "
            "classes, flux and the morphological particle types, per layer"
        )
        summary = _run_with(client, load_run_config(config_file), None, None)
        _echo_skill(summary.metrics)
        year2_file = _write_demo_year2_config(out, root, labels=made["labels"], quick=quick)
        click.echo(
            f"\nThe year-2 chain ({year2_file}): plankton groups in 0-200 m from the "
            + ("classifier's labels" if made["labels"] else "human labels")
        )
        summary2 = _run_with(client, load_run_config(year2_file), None, None)
    _echo_skill(summary2.metrics)
    click.echo(
        f"\nEverything is under {out}/: world/ (the demo world), tables/ (what was read), "
        f"images/ (types, classifier, labels, consistency report), run/ and run-year2/ "
        f"(targets, matchup, model, metrics.json, fields.zarr, report/index.html).\n"
        f"Re-run a chain alone with: oceanfields run {config_file}"
    )


def _write_demo_run_config(out: str, root: str, *, types: str, quick: bool = False) -> str:
    """Write OUT/run.yaml: the demo's year-1 run file, every default spelled out.

    Its per-type targets are the morphological particle types (``types``: their labels
    folder) of the image path.
    """
    doc = _demo_run_doc(root, labels=types, quick=quick)
    doc["out"] = str((Path(out) / "run").resolve())
    return _write_yaml(Path(out) / "run.yaml", doc, "year-1")


def _write_demo_year2_config(
    out: str, root: str, *, labels: str | None, quick: bool = False
) -> str:
    """Write OUT/run-year2.yaml: plankton groups in 0-200 m from the classifier's labels.

    Without labels (no classifier: the images extra is not installed) the validated and
    predicted human categories of EcoTaxa are counted instead.
    """
    from pipeline.demo.truth import GROUPS

    doc = _demo_run_doc(root, labels=labels, quick=quick)
    doc["inputs"]["truth"] = None  # the truth is per year-1 layer only
    doc["targets"]["layers"] = [[0, 200]]
    doc["object_targets"]["categories"] = list(GROUPS)
    doc["out"] = str((Path(out) / "run-year2").resolve())
    return _write_yaml(Path(out) / "run-year2.yaml", doc, "year-2")


def _demo_run_doc(root: str, *, labels: str | None, quick: bool = False) -> dict[str, Any]:
    from pipeline.run.config import RunConfig, run_config_to_dict

    doc = run_config_to_dict(RunConfig())
    doc["inputs"].update(
        catalog="demo",
        params={"root": str(Path(root).resolve())},
        particles="ecopart_detailed",
        environment="environment",
        objects="ecotaxa",
        truth="truth_profiles",
        labels=str(Path(labels).resolve()) if labels else None,
    )
    doc["object_targets"]["labels"] = "machine" if labels else "annotated"
    doc["object_targets"].pop("layers", None)  # the object targets use targets.layers
    if quick:
        doc["split"]["n_folds"] = 3
        doc["train"].update(n_estimators=200, baselines=["climatology"])
    return doc


def _write_yaml(path: Path, doc: dict[str, Any], what: str) -> str:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# The demo's {what} run file (oceanfields demo); run it with: oceanfields run THIS_FILE\n"
    )
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return str(path)


def _same_world(root: str, params: dict[str, Any]) -> bool:
    path = Path(root) / "world.json"
    if not path.is_file():
        return False
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    saved = info.get("parameters", info)
    return all(saved.get(k) == v for k, v in params.items())


def _short(obj: Any) -> str:
    if hasattr(obj, "columns") and hasattr(obj, "npartitions"):
        return f"{len(obj)} rows x {len(obj.columns)} columns ({', '.join(obj.columns[:8])}, ...)"
    return repr(obj)[:200]


# --------------------------------------------------------------------------- catalog


@main.group()
def catalog() -> None:
    """List and describe intake catalogs (a name in catalogs/ or a path)."""


@catalog.command("list")
@click.argument("name")
def catalog_list(name: str) -> None:
    """List the entries of catalog NAME with their one-line descriptions."""
    from pipeline.catalog import list_entries, open_catalog

    for entry in list_entries(open_catalog(name)):
        first = (entry.get("description") or "").strip().splitlines()
        click.echo(f"{entry['name']:<22} {first[0] if first else ''}")


@catalog.command("show")
@click.argument("name")
@click.argument("entry", required=False)
def catalog_show(name: str, entry: str | None) -> None:
    """Show the description and parameters of every entry of NAME (or of ENTRY)."""
    from pipeline.catalog import list_entries, open_catalog

    entries = list_entries(open_catalog(name))
    if entry is not None:
        names = [e["name"] for e in entries]
        if entry not in names:
            raise click.ClickException(f"{name}: no entry {entry!r}; entries: {', '.join(names)}")
        entries = [e for e in entries if e["name"] == entry]
    for e in entries:
        click.echo(f"{e['name']}  (reader: {e.get('reader') or 'intake'})")
        for line in (e.get("description") or "").strip().splitlines():
            click.echo(f"    {line}")
        for p in e.get("parameters", []):
            pname = p.get("name") if isinstance(p, dict) else str(p)
            default = p.get("default") if isinstance(p, dict) else None
            desc = p.get("description", "") if isinstance(p, dict) else ""
            click.echo(f"    parameter {pname} (default {default!r}): {desc}")
        click.echo("")


# --------------------------------------------------------------------------- ingest


@main.command()
@click.argument("kind", type=click.Choice(["ecotaxa", "ecopart"]))
@click.argument("urls", nargs=-1, required=True)
@click.option("--out", required=True, help="Output folder (local path or s3://bucket/prefix).")
@click.option(
    "--metadata",
    "metadata_url",
    default=None,
    help="EcoPart metadata summary (default: the *_Export_metadata_summary.tsv beside the files).",
)
@click.option("--encoding", default=None, help="Force an encoding (default: auto).")
@click.option("--no-image-check", is_flag=True, help="EcoTaxa: do not check that images exist.")
@click.option("--cluster", "cluster_file", default=None, help=_CLUSTER_HELP)
def ingest(
    kind: str,
    urls: tuple[str, ...],
    out: str,
    metadata_url: str | None,
    encoding: str | None,
    no_image_check: bool,
    cluster_file: str | None,
) -> None:
    """Read EcoTaxa or EcoPart files (URLs or globs) into the canonical table.

    Writes OUT/<table>.parquet (objects or particles), OUT/quarantine.parquet,
    OUT/files.parquet and OUT/summary.json, and prints the counts by reason.
    Storage options come from the environment / fsspec configuration only.
    """
    from pipeline.clusters.client import cluster_client
    from pipeline.io import expand_urls

    files = expand_urls(list(urls))
    if kind == "ecotaxa":
        from pipeline.sources.ecotaxa import read_ecotaxa

        result = read_ecotaxa(files, encoding=encoding, check_images=not no_image_check)
        table = "objects"
    else:
        from pipeline.sources.ecopart import read_ecopart

        kwargs: dict[str, Any] = {"encoding": encoding}
        if metadata_url:
            kwargs["metadata_url"] = metadata_url
        result = read_ecopart(files, **kwargs)
        table = "particles"
    with cluster_client(cluster_file) as client:
        click.echo(f"Dask dashboard: {client.dashboard_link}")
        summary = _write_read_result(result, out, table, client)
    click.echo(f"{kind}: {table}")
    _echo_summary(summary)
    click.echo(
        f"Written under {out}: {table}.parquet, quarantine.parquet, files.parquet, summary.json"
    )


main.add_command(images_group)
main.add_command(cluster_group)
main.add_command(bench_command)
