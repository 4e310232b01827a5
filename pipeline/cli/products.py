"""The ``oceanfields export`` and ``oceanfields serve`` commands: products of a run's output.

``export netcdf`` writes the fields as one CF NetCDF-4 file; ``serve`` answers OGC API
EDR queries on the fields over HTTP. Only the CLI prints.
"""

from __future__ import annotations

import logging

import click

__all__ = ["export", "serve"]

logger = logging.getLogger(__name__)


def _pairs(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE, e.g. creator_email=me@x.org")
        out[key.strip()] = value
    return out


@click.group()
def export() -> None:
    """Export a run's products: CF NetCDF, rechunked zarr, Darwin Core Archive."""


@export.command("netcdf")
@click.argument("run_out")
@click.option("--out", default=None, help="File or URL to write (default RUN_OUT/fields.nc).")
@click.option(
    "--attr",
    "attrs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Global attribute to add or override (creator_email, publisher_url, license, ...).",
)
def export_netcdf_command(run_out: str, out: str | None, attrs: tuple[str, ...]) -> None:
    """Write RUN_OUT/fields.zarr as one CF-1.11/ACDD-1.3 NetCDF-4 file.

    RUN_OUT is the run's output folder or URL (s3://...; endpoint and credentials from
    the environment).
    """
    from pipeline.products.netcdf import export_netcdf

    path = export_netcdf(run_out, out, attrs=_pairs(attrs))
    click.echo(f"NetCDF written: {path}")
    _refresh_entries(run_out, out)


def _refresh_entries(run_out: str, out: str | None) -> None:
    """Rewrite the run's STAC entry, which lists the products beside the fields."""
    if out is None:
        from pipeline.products.entries import write_entries

        write_entries(run_out)
        click.echo(f"STAC entry updated: {run_out.rstrip('/')}/stac/collection.json")


@export.command("zarr")
@click.argument("run_out")
@click.option(
    "--chunking",
    type=click.Choice(["series", "map"]),
    default="series",
    show_default=True,
    help="series: all months and layers of a block of cells per chunk (time series); "
    "map: one month and layer of the whole grid per chunk.",
)
@click.option("--out", default=None, help="Store to write (default RUN_OUT/fields-CHUNKING.zarr).")
def export_zarr_command(run_out: str, chunking: str, out: str | None) -> None:
    """Write a copy of RUN_OUT/fields.zarr chunked for time series or for maps."""
    from pipeline.products.chunking import write_rechunked

    path = write_rechunked(run_out, chunking, out)  # type: ignore[arg-type]
    click.echo(f"zarr ({chunking} chunks) written: {path}")
    _refresh_entries(run_out, out)


@export.command("dwca")
@click.argument("run_out")
@click.option("--out", default=None, help="Zip file or URL to write (default RUN_OUT/dwca.zip).")
@click.option(
    "--taxon",
    "taxa",
    multiple=True,
    metavar="CATEGORY=NAME",
    help="A category that is a taxon, and its scientific name (default: the capitalised "
    "categories, as named).",
)
def export_dwca_command(run_out: str, out: str | None, taxa: tuple[str, ...]) -> None:
    """Write the sample-level targets of RUN_OUT as a Darwin Core Archive (OBIS-ENV-DATA).

    Event core (casts and their layers), occurrences of the counted taxa, and every
    concentration, the carbon flux and the volume imaged as extended MeasurementOrFact.
    """
    from pipeline.products.dwca import export_dwca

    path = export_dwca(run_out, out, taxa=_pairs(taxa) if taxa else None)
    click.echo(f"Darwin Core Archive written: {path}")


@click.command("serve")
@click.argument("run_out")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
def serve(run_out: str, host: str, port: int) -> None:
    """Serve RUN_OUT/fields.zarr over OGC API EDR (position, area, cube queries).

    Open http://HOST:PORT/docs for the API; e.g.
    /datasets/fields/edr/position?coords=POINT(-30 45)&parameter-name=flux_mgc_m2_d
    """
    from pipeline.products.serve import serve_fields

    click.echo(f"Serving {run_out} on http://{host}:{port} (EDR under /datasets/fields/edr/)")
    serve_fields(run_out, host=host, port=port)
