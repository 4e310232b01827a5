"""``oceanfields demo`` and ``oceanfields demo-data``: the tour of the flow on the demo world.

Registered on the main command group by :mod:`pipeline.cli.main`. ``demo-data`` writes the
demo world (:func:`pipeline.demo.generate_demo_world`); ``demo`` reads it through the
catalog, runs the image path (:func:`demo_images`) and the year-1 and year-2 chains from
the run files it writes (:func:`write_demo_run_config`, :func:`write_demo_year2_config`:
:func:`demo_run_config` with ``dataclasses.replace``). Only the CLI prints.

The demo's output folder is a local path or an fsspec URL (``s3://bucket/demo``): every
file the tour writes (tables, images, run files, runs) goes through one
:class:`~pipeline.store.OutputStore`, and it reads its own outputs back through it. The demo
world is always a local folder (its generator writes local files): OUT/world for a local
OUT, ``./demo-world`` (or ``--world``) for a URL. Storage options (endpoint, credentials)
come from the environment only (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...).
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipeline.cli.images import (
    classify_and_report,
    consistency_and_report,
    train_and_report,
    types_and_report,
)
from pipeline.cli.output import CLUSTER_HELP, echo_skill, echo_summary, run_with, write_read_result
from pipeline.errors import InputFormatError
from pipeline.io import read_bytes
from pipeline.store import OutputStore

if TYPE_CHECKING:
    from pipeline.run.config import RunConfig

__all__ = [
    "demo",
    "demo_data",
    "demo_images",
    "demo_run_config",
    "write_demo_run_config",
    "write_demo_year2_config",
]

#: Help of ``--world-kind`` (``demo``'s ``--world`` is the world's folder).
WORLD_KIND_HELP = (
    "Which demo world: 'realistic' (real coastlines, hidden drivers, cruises, UVP5SD/HD/UVP6 "
    "noise; pipeline.demo.drivers) or 'simple' (the first world: truth a closed form of the "
    "delivered fields, Poisson counts)."
)

_world_kind_option = click.option(
    "--world-kind",
    "world_kind",
    type=click.Choice(["realistic", "simple"]),
    default="realistic",
    show_default=True,
    help=WORLD_KIND_HELP,
)

#: The parts of the demo's tour, in order (``demo --until``).
TOUR_PARTS = ("tables", "images", "year1", "year2")

#: Where ``demo`` keeps the demo world when OUT is a URL and ``--world`` is not given.
URL_WORLD = "demo-world"

_PROTOCOL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


# --------------------------------------------------------------------------- demo-data


@click.command("demo-data")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--resolution", default=1.0, show_default=True, help="Grid step, degrees.")
@click.option(
    "--years", default="2020", show_default=True, help="Comma-separated years, e.g. 2019,2020."
)
@click.option("--profiles", default=300, show_default=True, help="Number of UVP profiles.")
@click.option("--images", default=3000, show_default=True, help="About this many images.")
@click.option("--seed", default=0, show_default=True, help="Random seed (same seed, same world).")
@_world_kind_option
@click.option(
    "--objects",
    type=click.IntRange(min=1),
    default=None,
    help="Also write an EcoTaxa export of this many objects (OUT/ecotaxa_scale/, 2 million "
    "per TSV) for benchmarks at archive scale; needs --no-images.",
)
@click.option(
    "--no-images",
    is_flag=True,
    help="Write the --objects export without images (features drawn, not measured).",
)
def demo_data(
    out: str,
    resolution: float,
    years: str,
    profiles: int,
    images: int,
    seed: int,
    world_kind: str,
    objects: int | None,
    no_images: bool,
):
    """Generate the demo world (real EcoPart/EcoTaxa/Copernicus formats + truth) in OUT.

    Time and disk grow linearly with --profiles (about 25 ms and 0.4 MB per profile at
    2 deg) and with --objects (about 0.3 kB per object).
    """
    if objects is not None and not no_images:
        raise click.BadParameter(
            f"{objects} objects cannot be drawn as vignettes; add --no-images (the world's "
            "own EcoTaxa export keeps its --images vignettes).",
            param_hint="--objects",
        )
    world = _generate(out, resolution, _parse_years(years), profiles, images, seed, world_kind)
    _echo_world(world)
    if objects is not None:
        import pandas as pd

        from pipeline.demo.ecotaxa_writer import write_scale_export

        t0 = time.perf_counter()
        truth = pd.read_parquet(
            world.paths["truth_profiles"], columns=["profile_id", "lat", "lon", "time"]
        )
        paths = write_scale_export(f"{out}/ecotaxa_scale", objects, truth, seed=seed)
        click.echo(
            f"  ecotaxa_scale      {out}/ecotaxa_scale ({objects} objects without images in "
            f"{len(paths)} TSV(s), {time.perf_counter() - t0:.1f} s)"
        )


def _parse_years(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(y) for y in text.split(",") if y.strip())
    except ValueError as err:
        raise click.BadParameter(f"{text!r}: expected years like 2020 or 2019,2020") from err


def _generate(
    out: str,
    resolution: float,
    years: Sequence[int],
    profiles: int,
    images: int,
    seed: int,
    kind: str = "realistic",
) -> Any:
    from pipeline.demo import generate_demo_world

    t0 = time.perf_counter()
    click.echo(
        f"Generating the {kind} demo world in {out} ({resolution} deg, years {list(years)}, "
        f"{profiles} profiles, ~{images} images, seed {seed}) ..."
    )
    world = generate_demo_world(
        out,
        resolution=resolution,
        years=tuple(years),
        n_profiles=profiles,
        n_images=images,
        seed=seed,
        world=kind,
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


def _echo_environment(info: dict[str, Any], *, indent: str = "  ") -> None:
    for key, value in info.items():
        click.echo(f"{indent}{key}: {value}")


# --------------------------------------------------------------------------- demo


@click.command("demo")
@click.option(
    "--out",
    default="demo-out",
    show_default=True,
    help="Output folder: a local path or a URL (s3://bucket/demo; endpoint and credentials "
    f"from the environment). For a URL the demo world stays local, in ./{URL_WORLD} "
    "unless --world says where.",
)
@click.option(
    "--world",
    "world",
    default=None,
    help="Local folder of the demo world (reused when it holds one with the same "
    f"parameters). Default: OUT/world, or ./{URL_WORLD} when OUT is a URL.",
)
@click.option("--resolution", default=1.0, show_default=True, help="Grid step, degrees.")
@click.option(
    "--grid",
    "grid_step",
    type=float,
    default=None,
    help="Output grid step of the fields (degrees, e.g. 0.5 or 0.25); default the grid of "
    "the physics product (--resolution). The five environment products are regridded onto it.",
)
@click.option("--years", default="2020", show_default=True, help="Comma-separated years.")
@click.option("--profiles", default=300, show_default=True, help="Number of UVP profiles.")
@click.option("--images", default=3000, show_default=True, help="About this many images.")
@click.option("--seed", default=0, show_default=True, help="Random seed.")
@_world_kind_option
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
@click.option(
    "--until",
    type=click.Choice(TOUR_PARTS),
    default=TOUR_PARTS[-1],
    show_default=True,
    help="Stop after this part of the tour (tables, images, the year-1 chain); the same "
    "command without it goes on from there, reusing the world, the images and the "
    "finished chains (the catalog entries are read again).",
)
@click.option("--cluster", "cluster_file", default=None, help=CLUSTER_HELP)
def demo(
    out: str,
    world: str | None,
    resolution: float,
    grid_step: float | None,
    years: str,
    profiles: int,
    images: int,
    seed: int,
    world_kind: str,
    image_epochs: int,
    quick: bool,
    until: str,
    cluster_file: str | None,
) -> None:
    """Run oceanfields end to end on the demo world (LocalCluster by default).

    Generates the world in OUT/world (reused when already there with the same
    parameters; elsewhere with --world), reads every entry of the demo catalog through
    the readers and writes the canonical tables with their quarantine under OUT/tables,
    then the image path (OUT/images: morphological particle types, a CNN trained on the
    validated images, every image classified on the cluster, the consistency report),
    then the year-1 chain (OUT/run.yaml: targets incl. the particle types, matchup,
    block-CV training, fields, report) into OUT/run and the year-2 chain
    (OUT/run-year2.yaml: plankton groups in 0-200 m from the classifier's labels) into
    OUT/run-year2, printing the skill tables. A finished chain is not redone.

    OUT may be a URL (s3://bucket/demo, storage options from the environment only:
    AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...): the tables, images, run files and runs are
    written there, while the world, which the generator writes as local files, stays in a
    local folder (./demo-world unless --world says where; printed) that the run files
    name by its absolute path.
    """
    from pipeline.catalog import list_entries, open_catalog, read_entry
    from pipeline.clusters.client import cluster_client
    from pipeline.run.config import load_run_config
    from pipeline.sources.copernicus import describe_environment
    from pipeline.sources.table import ReadResult

    store = _store(out)
    root = _world_folder(out, world)
    params = {
        "resolution": resolution,
        "years": list(_parse_years(years)),
        "n_profiles": profiles,
        "n_images": images,
        "seed": seed,
        "world": world_kind,
    }
    if _same_world(root, params):
        click.echo(f"Demo world already in {root} with these parameters; reusing it.")
    else:
        _echo_world(
            _generate(root, resolution, params["years"], profiles, images, seed, world_kind)
        )

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
                dest = store.path(f"tables/{name}")
                summary = write_read_result(result, dest, table, client)
                echo_summary(summary)
                click.echo(f"  written: {dest}/{table}.parquet, {dest}/quarantine.parquet")
            elif hasattr(result, "data_vars"):
                _echo_environment(describe_environment(result))
            else:
                click.echo(f"  {type(result).__name__}: {_short(result)}")
        if until == "tables":
            _echo_stopped(until)
            return
        made = demo_images(
            out, read_entry(catalog, "ecotaxa").accepted, client, epochs=image_epochs, world=root
        )
        if until == "images":
            _echo_stopped(until)
            return
        config_file = write_demo_run_config(
            out, root, types=made["types"], quick=quick, grid=grid_step
        )
        click.echo(
            f"\nThe year-1 chain on the demo world ({config_file}): particle size "
            "classes, flux and the morphological particle types, per layer"
        )
        summary = run_with(client, load_run_config(config_file), None, None)
        echo_skill(summary.metrics)
        if until == "year1":
            _echo_stopped(until)
            return
        year2_file = write_demo_year2_config(
            out, root, labels=made["labels"], quick=quick, grid=grid_step
        )
        click.echo(
            f"\nThe year-2 chain ({year2_file}): plankton groups in 0-200 m from the "
            + ("classifier's labels" if made["labels"] else "human labels")
        )
        summary2 = run_with(client, load_run_config(year2_file), None, None)
    echo_skill(summary2.metrics)
    world_note = (
        "world/ (the demo world), "
        if root == f"{store.url}/world"
        else f"(the demo world is in {Path(root).resolve()}) "
    )
    click.echo(
        f"\nEverything is under {store.url}/: {world_note}tables/ (what was read), "
        f"images/ (types, classifier, labels, consistency report), run/ and run-year2/ "
        f"(targets, matchup, model, metrics.json, fields.zarr, report/index.html).\n"
        f"Re-run a chain alone with: oceanfields run {config_file}"
    )


def _echo_stopped(until: str) -> None:
    click.echo(
        f"\nStopped after {until} (--until {until}); the same command without --until goes "
        "on from there, reusing the world, the images and the finished chains."
    )


def _is_url(location: str) -> bool:
    """Tell whether LOCATION is a URL with a protocol (``s3://...``), not a local path."""
    return bool(_PROTOCOL.match(location))


def _store(out: str) -> OutputStore:
    """Return the demo's output store: a URL as given, a local path spelled as ``Path`` does."""
    return OutputStore(out if _is_url(out) else str(Path(out)))


def _location(location: str) -> str:
    """How a run file names LOCATION: a URL as given, a local path made absolute."""
    return location.rstrip("/") if _is_url(location) else str(Path(location).resolve())


def _world_folder(out: str, world: str | None) -> str:
    """Local folder of the demo world: WORLD, else OUT/world, else ./demo-world for a URL."""
    if world is not None:
        if _is_url(world):
            raise click.BadParameter(
                f"{world!r}: the demo world is written as local files; give a local "
                "folder (the outputs may still go to a URL with --out).",
                param_hint="--world",
            )
        return world
    if _is_url(out):
        click.echo(
            f"The output folder {out} is a URL: the demo world is kept in the local "
            f"folder {Path(URL_WORLD).resolve()} (--world sets another)."
        )
        return URL_WORLD
    return f"{_store(out).url}/world"


# --------------------------------------------------------------------------- run files


def demo_run_config(
    root: str,
    *,
    labels: str | None,
    quick: bool = False,
    out: str | None = None,
    grid: float | None = None,
) -> RunConfig:
    """Build the demo's year-1 run: every entry of the demo catalog at ROOT, the noise ceiling.

    Parameters
    ----------
    root : str
        Folder of the demo world (a local path is made absolute, a URL kept).
    labels : str, optional
        Labels folder of the objects (a local path is made absolute, a URL kept): machine
        labels when given, else the annotated EcoTaxa categories.
    quick : bool
        3 CV folds, at most 200 boosting rounds and the climatology baseline only.
    out : str, optional
        Output folder of the run.
    grid : float, optional
        Output grid step (degrees); default the physics product's grid.

    Returns
    -------
    RunConfig
        The defaults of every section but these.

    See Also
    --------
    write_demo_run_config, write_demo_year2_config : the run files of the tour.

    Examples
    --------
    >>> config = demo_run_config("world", labels=None, quick=True)
    >>> config.inputs.truth, config.object_targets.labels, config.split.n_folds
    ('truth_profiles', 'annotated', 3)
    """
    from pipeline.demo.products import DEMO_SOURCES
    from pipeline.predictors.grid import GridConfig
    from pipeline.run.config import RunConfig

    base = RunConfig()
    inputs = dataclasses.replace(
        base.inputs,
        catalog="demo",
        params={"root": _location(root)},
        particles="ecopart_detailed",
        environment=DEMO_SOURCES,
        objects="ecotaxa",
        truth="truth_profiles",
        labels=_location(labels) if labels else None,
    )
    object_targets = dataclasses.replace(
        base.object_targets, labels="machine" if labels else "annotated"
    )
    config = dataclasses.replace(base, inputs=inputs, object_targets=object_targets, out=out)
    if grid is not None:
        config = dataclasses.replace(config, grid=GridConfig(resolution=grid))
    if quick:
        config = dataclasses.replace(
            config,
            split=dataclasses.replace(config.split, n_folds=3),
            train=dataclasses.replace(config.train, n_estimators=200, baselines=("climatology",)),
        )
    return config


def write_demo_run_config(
    out: str, root: str, *, types: str, quick: bool = False, grid: float | None = None
) -> str:
    """Write OUT/run.yaml: the demo's year-1 run file, every default spelled out.

    Its per-type targets are the morphological particle types (``types``: their labels
    folder) of the image path.

    Parameters
    ----------
    out : str
        The demo's output folder (local path or URL); the run writes under OUT/run.
    root : str
        Folder of the demo world.
    types : str
        Labels folder of the morphological types.
    quick : bool
        The quick tour (see :func:`demo_run_config`).
    grid : float, optional
        Output grid step (degrees); default the physics product's grid.

    Returns
    -------
    str
        Path or URL of the run file.
    """
    from pipeline.run.config import run_config_to_dict

    store = _store(out)
    config = demo_run_config(
        root, labels=types, quick=quick, out=_location(store.path("run")), grid=grid
    )
    return _write_yaml(store, "run.yaml", run_config_to_dict(config), "year-1")


def write_demo_year2_config(
    out: str, root: str, *, labels: str | None, quick: bool = False, grid: float | None = None
) -> str:
    """Write OUT/run-year2.yaml: plankton groups in 0-200 m from the classifier's labels.

    Without labels (no classifier: the images extra is not installed) the validated and
    predicted human categories of EcoTaxa are counted instead.

    Parameters
    ----------
    out : str
        The demo's output folder (local path or URL); the run writes under OUT/run-year2.
    root : str
        Folder of the demo world.
    labels : str, optional
        Labels folder of the classifier.
    quick : bool
        The quick tour (see :func:`demo_run_config`).
    grid : float, optional
        Output grid step (degrees); default the physics product's grid.

    Returns
    -------
    str
        Path or URL of the run file.
    """
    from pipeline.demo.truth import GROUPS
    from pipeline.run.config import run_config_to_dict
    from pipeline.targets.particles import Layer

    store = _store(out)
    config = demo_run_config(
        root, labels=labels, quick=quick, out=_location(store.path("run-year2")), grid=grid
    )
    layers = (Layer(0, 200),)
    config = dataclasses.replace(
        config,
        inputs=dataclasses.replace(config.inputs, truth=None),  # the truth is per year-1 layer
        targets=dataclasses.replace(config.targets, layers=layers),
        object_targets=dataclasses.replace(config.object_targets, categories=GROUPS, layers=layers),
    )
    doc = run_config_to_dict(config)
    # the demo has always written its year-2 layer as a [top, bottom] pair
    doc["targets"]["layers"] = [[layer.top_m, layer.bottom_m] for layer in layers]
    return _write_yaml(store, "run-year2.yaml", doc, "year-2")


def _write_yaml(store: OutputStore, name: str, doc: dict[str, Any], what: str) -> str:
    """Write DOC as the run file NAME of STORE (whole or not at all); return its path."""
    import yaml

    header = (
        f"# The demo's {what} run file (oceanfields demo); run it with: oceanfields run THIS_FILE\n"
    )
    store.write_text(name, header + yaml.safe_dump(doc, sort_keys=False))
    return store.path(name)


def _same_world(root: str, params: dict[str, Any]) -> bool:
    """Tell whether ROOT holds a demo world made with PARAMS (its world.json says so)."""
    try:
        info = json.loads(read_bytes(f"{root.rstrip('/')}/world.json"))
    except (InputFormatError, ValueError):
        return False
    saved = info.get("parameters", info)
    return all(saved.get(k) == v for k, v in params.items())


def _short(obj: Any) -> str:
    if hasattr(obj, "columns") and hasattr(obj, "npartitions"):
        return f"{len(obj)} rows x {len(obj.columns)} columns ({', '.join(obj.columns[:8])}, ...)"
    return repr(obj)[:200]


# --------------------------------------------------------------------------- images


def demo_images(
    out: str, objects: Any, client: Any, *, epochs: int = 12, world: str | None = None
) -> dict[str, Any]:
    """Run the image path of the demo under OUT/images; return what the chains need.

    Morphological types of the particles (against the world's true types: adjusted Rand
    index), a classifier trained on the validated images (held-out accuracy), every image
    classified on the cluster, and the consistency report.

    Parameters
    ----------
    out : str
        The demo's output folder (local path or URL); the image path writes under
        OUT/images.
    objects : dask.dataframe.DataFrame
        The demo's EcoTaxa objects.
    client : dask.distributed.Client
        Where the images are classified.
    epochs : int
        Most epochs of the classifier.
    world : str, optional
        Folder of the demo world (its true particle types); default OUT/world.

    Returns
    -------
    dict
        ``types`` (labels folder of the morphological types), ``labels`` (the
        classifier's labels folder; None without the images extra), ``ari``,
        ``classifier`` (held-out scores) and ``model_id``.
    """
    import pandas as pd
    from sklearn.metrics import adjusted_rand_score

    from pipeline.images.classify import ClassifyConfig
    from pipeline.images.dataset import image_table
    from pipeline.images.morphology import MorphologyConfig

    base = _store(out).sub("images")
    world = world if world is not None else f"{_store(out).url}/world"
    if base.exists("summary.json"):
        made = base.read_json("summary.json")
        click.echo(
            f"\nImages: already done in {base.url} (types ARI {made['ari']:.3f}, classifier "
            f"held-out accuracy {made['classifier']['accuracy']:.3f}); reusing them."
        )
        return made
    click.echo(f"\nImages: morphological particle types ({base.path('types')}):")
    _, types = types_and_report(objects, base.path("types"), config=MorphologyConfig())
    truth = pd.read_parquet(
        f"{world.rstrip('/')}/truth/objects.parquet", columns=["object_id", "kind"]
    )
    joined = types.merge(truth, on="object_id")
    ari = float(adjusted_rand_score(joined["kind"], joined["label"]))
    click.echo(f"  adjusted Rand index against the world's true particle types: {ari:.3f}")

    try:
        import torch  # noqa: F401
    except ImportError:
        click.echo(
            "\nImages: the CNN classifier needs the images extra (pip install "
            "'oceanfields[images]'); skipped: the year-2 chain uses the human labels."
        )
        return {
            "types": base.path("types/labels"),
            "labels": None,
            "ari": ari,
            "classifier": None,
        }  # not saved: a classifier may come later

    from pipeline.images.training_config import ImageTrainConfig  # deferred, as the training

    click.echo(f"\nImages: classifier on the validated images ({base.path('model')}):")
    table = image_table(objects, statuses=("V",))
    config = ImageTrainConfig(size=48, canvas_px=96, width=12, epochs=epochs, patience=epochs)
    trained = train_and_report(table, config=config, out=base.path("model"))
    click.echo("\nImages: every image classified on the cluster:")
    _forget_other_model(base, "classified", trained.model.model_id)
    classify_and_report(
        objects,
        base.path("model"),
        base.path("classified"),
        config=ClassifyConfig(partition_size=1000),
        client=client,
    )
    labels = base.path("classified/labels")
    consistency_and_report(objects, labels, base.path("consistency"))
    made = {
        "types": base.path("types/labels"),
        "labels": labels,
        "ari": ari,
        "classifier": trained.metrics.get("test"),
        "model_id": trained.model.model_id,
    }
    # last: the image path is done
    base.write_json("summary.json", made, default=str, newline=False)
    return made


def _forget_other_model(store: OutputStore, folder: str, model_id: str) -> None:
    """Remove the demo's labels of an earlier model (a retrained demo model differs)."""
    manifest = f"{folder}/manifest.json"
    if store.exists(manifest) and store.read_json(manifest).get("model_id") != model_id:
        click.echo(f"  labels in {store.path(folder)} are of another model; classifying again")
        store.remove(folder)
