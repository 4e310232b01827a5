"""The ``oceanfields`` command line: the group, each step of the flow, catalogs, ingest.

The demo (:mod:`~pipeline.cli.demo`), the image commands, the cluster check and the
benchmark are commands of their own modules, registered here; what the commands print is
shared in :mod:`~pipeline.cli.output`. Only the CLI prints.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import click

from pipeline import __version__
from pipeline.cli.bench import bench as bench_command
from pipeline.cli.cluster import cluster as cluster_group
from pipeline.cli.demo import demo as demo_command
from pipeline.cli.demo import demo_data as demo_data_command
from pipeline.cli.images import images as images_group
from pipeline.cli.output import CLUSTER_HELP, echo_skill, echo_summary, run_with, write_read_result
from pipeline.cli.products import export as export_group
from pipeline.cli.products import serve as serve_command
from pipeline.errors import OceanfieldsError

__all__ = ["main"]

logger = logging.getLogger(__name__)


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


# --------------------------------------------------------------------------- run


def _run(
    config: Any, out: str | None, cluster_file: str | None, steps: Sequence[str] | None
) -> Any:
    """Run steps of a run config on a cluster, printing progress and the dashboard link."""
    from pipeline.clusters.client import cluster_client

    with cluster_client(cluster_file) as client:
        click.echo(f"Dask dashboard: {client.dashboard_link}")
        return run_with(client, config, out, steps)


@main.command("run")
@click.argument("config_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", default=None, help="Output folder or URL (default: 'out:' of the file).")
@click.option("--cluster", "cluster_file", default=None, help=CLUSTER_HELP)
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
    echo_skill(summary.metrics)
    click.echo(f"\nEverything is under {summary.out}/ (report: {summary.out}/report/index.html)")


def _step_command(step: str) -> click.Command:
    @click.command(step, help=f"Run only the '{step}' step of CONFIG_FILE (see 'run').")
    @click.argument("config_file", type=click.Path(exists=True, dir_okay=False))
    @click.option("--out", default=None, help="Output folder or URL.")
    @click.option("--cluster", "cluster_file", default=None, help=CLUSTER_HELP)
    def command(config_file: str, out: str | None, cluster_file: str | None) -> None:
        from pipeline.run.config import load_run_config

        summary = _run(load_run_config(config_file), out, cluster_file, [step])
        if step == "train":
            echo_skill(summary.metrics)

    return command


for _name in ("targets", "matchup", "train", "fields", "report"):
    main.add_command(_step_command(_name))


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
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Catalog parameter (repeatable), e.g. --param root=demo-out/world.",
)
@click.option(
    "--open-remote",
    is_flag=True,
    help="Also open environment entries at remote URLs to show their grid (network).",
)
def catalog_show(name: str, entry: str | None, params: tuple[str, ...], open_remote: bool) -> None:
    """Show the description and parameters of every entry of NAME (or of ENTRY).

    Environment entries (readers copernicus and netcdf) that can be opened are opened
    lazily to show their grid, depth levels and time kind.
    """
    from pipeline.catalog import list_entries, open_catalog

    values = dict(_key_value(p) for p in params)
    cat = open_catalog(name, **values)
    entries = list_entries(cat)
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
        if e.get("reader") in ("copernicus", "netcdf"):
            for line in _environment_lines(cat, e, open_remote):
                click.echo(f"    {line}")
        click.echo("")


def _key_value(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise click.BadParameter(f"{text!r}: expected KEY=VALUE", param_hint="--param")
    key, value = text.split("=", 1)
    return key.strip(), value


def _environment_lines(cat: Any, entry: dict[str, Any], open_remote: bool) -> list[str]:
    """Grid, depth and time kind of an environment entry, or why it was not opened."""
    from pipeline.catalog import read_entry
    from pipeline.sources.environment import source_summary

    url = str(entry.get("url") or "")
    if "://" in url and not url.startswith("file://") and not open_remote:
        return ["(remote: not opened; --open-remote shows its grid)"]
    try:
        summary = source_summary(read_entry(cat, entry["name"]))
    except Exception as err:  # any reader error: shown, never fatal for a listing
        return [f"(not opened: {type(err).__name__}: {str(err).splitlines()[0][:160]})"]
    return [f"{k}: {v}" for k, v in summary.items()]


# --------------------------------------------------------------------------- ingest


@main.command()
@click.argument("kind", type=click.Choice(["ecotaxa", "ecopart"]))
@click.argument("urls", nargs=-1, required=True)
@click.option("--out", required=True, help="Output folder (local path or s3://bucket/prefix).")
@click.option(
    "--metadata",
    "metadata_url",
    default=None,
    help="EcoPart metadata summary (default: the *_Export_metadata_summary.tsv among the "
    "inputs or beside the files).",
)
@click.option("--encoding", default=None, help="Force an encoding (default: auto).")
@click.option(
    "--no-image-check",
    is_flag=True,
    help="EcoTaxa: do not check that images exist (default: rows whose image is missing are "
    "quarantined, unless a TSV has none of its images: then it is read without images).",
)
@click.option(
    "--require-images",
    is_flag=True,
    help="EcoTaxa: quarantine every row whose image is missing, also in a TSV exported "
    "without any of its images.",
)
@click.option(
    "--batch-mb",
    type=click.FloatRange(min=0.001),
    default=None,
    help="Input megabytes per task, at most (default 128 MiB; small inputs still make "
    "several tasks of at least 50 files).",
)
@click.option(
    "--restart", is_flag=True, help="Write every batch again (default: skip batches written)."
)
@click.option("--cluster", "cluster_file", default=None, help=CLUSTER_HELP)
def ingest(
    kind: str,
    urls: tuple[str, ...],
    out: str,
    metadata_url: str | None,
    encoding: str | None,
    no_image_check: bool,
    require_images: bool,
    batch_mb: float | None,
    restart: bool,
    cluster_file: str | None,
) -> None:
    """Read EcoTaxa or EcoPart exports as exported into the canonical table.

    URLS are files, folders, globs, .zip archives (zips of zips too) or s3:// prefixes.
    EcoPart: PAR files are read (raw and detailed), the metadata summary gives positions,
    times and calibration; ZOO, CTD and unknown files are listed as not read. Writes
    OUT/<table>.parquet (objects or particles, one part per batch of files),
    OUT/quarantine.parquet, OUT/files.parquet, OUT/inventory.parquet and OUT/summary.json,
    and prints the counts by reason. A re-run after an interruption writes only the
    batches missing. Storage options come from the environment / fsspec configuration.
    """
    from pipeline.clusters.client import cluster_client
    from pipeline.store import OutputStore

    batch_bytes = None if batch_mb is None else max(1, int(batch_mb * 2**20))
    if no_image_check and require_images:
        raise click.UsageError("--no-image-check and --require-images contradict: pick one.")
    if kind == "ecotaxa":
        from pipeline.sources.ecotaxa import read_ecotaxa

        result = read_ecotaxa(
            list(urls),
            encoding=encoding,
            check_images=False if no_image_check else (True if require_images else "auto"),
            batch_bytes=batch_bytes,
        )
        table = "objects"
    else:
        from pipeline.sources.ecopart import read_ecopart

        kwargs: dict[str, Any] = {"encoding": encoding, "batch_bytes": batch_bytes}
        if metadata_url:
            kwargs["metadata_url"] = metadata_url
        result = read_ecopart(list(urls), **kwargs)
        table = "particles"
    if restart:
        OutputStore(out).remove("_state/ingest")  # no batch counts as written
    with cluster_client(cluster_file) as client:
        click.echo(f"Dask dashboard: {client.dashboard_link}")
        summary = write_read_result(result, out, table, client)
    click.echo(f"{kind}: {table}")
    echo_summary(summary)
    for what, n in summary.not_read.items():
        click.echo(f"  {n:>7}  file(s): {what}")
    if summary.batches_written < summary.batches:
        click.echo(
            f"  {summary.batches - summary.batches_written} of {summary.batches} batch(es) "
            "already written by an earlier run: skipped (--restart writes them again)"
        )
    click.echo(
        f"Written under {out}: {table}.parquet, quarantine.parquet, files.parquet, "
        "inventory.parquet, summary.json"
    )


main.add_command(demo_command)
main.add_command(demo_data_command)
main.add_command(images_group)
main.add_command(cluster_group)
main.add_command(bench_command)
main.add_command(export_group)
main.add_command(serve_command)
