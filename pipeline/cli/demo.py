"""``oceanfields demo`` and ``oceanfields demo-data``: the tour of the flow on the demo world.

Registered on the main command group by :mod:`pipeline.cli.main`. ``demo-data`` writes the
demo world (:func:`pipeline.demo.generate_demo_world`); ``demo`` reads it through the
catalog, runs the image path (:func:`demo_images`) and the year-1 and year-2 chains from
the run files it writes (:func:`write_demo_run_config`, :func:`write_demo_year2_config`:
:func:`demo_run_config` with ``dataclasses.replace``). Only the CLI prints.
"""

from __future__ import annotations

import dataclasses
import json
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


def _echo_environment(info: dict[str, Any], *, indent: str = "  ") -> None:
    for key, value in info.items():
        click.echo(f"{indent}{key}: {value}")


# --------------------------------------------------------------------------- demo


@click.command("demo")
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
@click.option("--cluster", "cluster_file", default=None, help=CLUSTER_HELP)
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
                summary = write_read_result(result, dest, table, client)
                echo_summary(summary)
                click.echo(f"  written: {dest}/{table}.parquet, {dest}/quarantine.parquet")
            elif hasattr(result, "data_vars"):
                _echo_environment(describe_environment(result))
            else:
                click.echo(f"  {type(result).__name__}: {_short(result)}")
        made = demo_images(
            out, read_entry(catalog, "ecotaxa").accepted, client, epochs=image_epochs
        )
        config_file = write_demo_run_config(out, root, types=made["types"], quick=quick)
        click.echo(
            f"\nThe year-1 chain on the demo world ({config_file}): particle size "
            "classes, flux and the morphological particle types, per layer"
        )
        summary = run_with(client, load_run_config(config_file), None, None)
        echo_skill(summary.metrics)
        year2_file = write_demo_year2_config(out, root, labels=made["labels"], quick=quick)
        click.echo(
            f"\nThe year-2 chain ({year2_file}): plankton groups in 0-200 m from the "
            + ("classifier's labels" if made["labels"] else "human labels")
        )
        summary2 = run_with(client, load_run_config(year2_file), None, None)
    echo_skill(summary2.metrics)
    click.echo(
        f"\nEverything is under {out}/: world/ (the demo world), tables/ (what was read), "
        f"images/ (types, classifier, labels, consistency report), run/ and run-year2/ "
        f"(targets, matchup, model, metrics.json, fields.zarr, report/index.html).\n"
        f"Re-run a chain alone with: oceanfields run {config_file}"
    )


# --------------------------------------------------------------------------- run files


def demo_run_config(
    root: str, *, labels: str | None, quick: bool = False, out: str | None = None
) -> RunConfig:
    """Build the demo's year-1 run: every entry of the demo catalog at ROOT, the noise ceiling.

    Parameters
    ----------
    root : str
        Folder of the demo world (made absolute).
    labels : str, optional
        Labels folder of the objects (made absolute): machine labels when given, else
        the annotated EcoTaxa categories.
    quick : bool
        3 CV folds, at most 200 boosting rounds and the climatology baseline only.
    out : str, optional
        Output folder of the run.

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
    from pipeline.run.config import RunConfig

    base = RunConfig()
    inputs = dataclasses.replace(
        base.inputs,
        catalog="demo",
        params={"root": str(Path(root).resolve())},
        particles="ecopart_detailed",
        environment="environment",
        objects="ecotaxa",
        truth="truth_profiles",
        labels=str(Path(labels).resolve()) if labels else None,
    )
    object_targets = dataclasses.replace(
        base.object_targets, labels="machine" if labels else "annotated"
    )
    config = dataclasses.replace(base, inputs=inputs, object_targets=object_targets, out=out)
    if quick:
        config = dataclasses.replace(
            config,
            split=dataclasses.replace(config.split, n_folds=3),
            train=dataclasses.replace(config.train, n_estimators=200, baselines=("climatology",)),
        )
    return config


def write_demo_run_config(out: str, root: str, *, types: str, quick: bool = False) -> str:
    """Write OUT/run.yaml: the demo's year-1 run file, every default spelled out.

    Its per-type targets are the morphological particle types (``types``: their labels
    folder) of the image path.

    Parameters
    ----------
    out : str
        The demo's output folder; the run writes under OUT/run.
    root : str
        Folder of the demo world.
    types : str
        Labels folder of the morphological types.
    quick : bool
        The quick tour (see :func:`demo_run_config`).

    Returns
    -------
    str
        Path of the run file.
    """
    config = demo_run_config(
        root, labels=types, quick=quick, out=str((Path(out) / "run").resolve())
    )
    return _write_yaml(Path(out) / "run.yaml", _run_doc(config), "year-1")


def write_demo_year2_config(out: str, root: str, *, labels: str | None, quick: bool = False) -> str:
    """Write OUT/run-year2.yaml: plankton groups in 0-200 m from the classifier's labels.

    Without labels (no classifier: the images extra is not installed) the validated and
    predicted human categories of EcoTaxa are counted instead.

    Parameters
    ----------
    out : str
        The demo's output folder; the run writes under OUT/run-year2.
    root : str
        Folder of the demo world.
    labels : str, optional
        Labels folder of the classifier.
    quick : bool
        The quick tour (see :func:`demo_run_config`).

    Returns
    -------
    str
        Path of the run file.
    """
    from pipeline.demo.truth import GROUPS
    from pipeline.targets.particles import Layer

    config = demo_run_config(
        root, labels=labels, quick=quick, out=str((Path(out) / "run-year2").resolve())
    )
    layers = (Layer(0, 200),)
    config = dataclasses.replace(
        config,
        inputs=dataclasses.replace(config.inputs, truth=None),  # the truth is per year-1 layer
        targets=dataclasses.replace(config.targets, layers=layers),
        object_targets=dataclasses.replace(config.object_targets, categories=GROUPS, layers=layers),
    )
    doc = _run_doc(config)
    # the demo has always written its year-2 layer as a [top, bottom] pair
    doc["targets"]["layers"] = [[layer.top_m, layer.bottom_m] for layer in layers]
    return _write_yaml(Path(out) / "run-year2.yaml", doc, "year-2")


def _run_doc(config: RunConfig) -> dict[str, Any]:
    """Dump CONFIG as a run file (without object_targets.layers: they are targets.layers)."""
    from pipeline.run.config import run_config_to_dict

    doc = run_config_to_dict(config)
    doc["object_targets"].pop("layers", None)
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


# --------------------------------------------------------------------------- images


def demo_images(out: str, objects: Any, client: Any, *, epochs: int = 12) -> dict[str, Any]:
    """Run the image path of the demo under OUT/images; return what the chains need.

    Morphological types of the particles (against the world's true types: adjusted Rand
    index), a classifier trained on the validated images (held-out accuracy), every image
    classified on the cluster, and the consistency report.

    Parameters
    ----------
    out : str
        The demo's output folder (its world in OUT/world).
    objects : dask.dataframe.DataFrame
        The demo's EcoTaxa objects.
    client : dask.distributed.Client
        Where the images are classified.
    epochs : int
        Most epochs of the classifier.

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

    base = Path(out) / "images"
    world = Path(out) / "world"
    done = base / "summary.json"
    if done.is_file():
        made = json.loads(done.read_text())
        click.echo(
            f"\nImages: already done in {base} (types ARI {made['ari']:.3f}, classifier "
            f"held-out accuracy {made['classifier']['accuracy']:.3f}); reusing them."
        )
        return made
    click.echo(f"\nImages: morphological particle types ({base / 'types'}):")
    _, types = types_and_report(objects, str(base / "types"), config=MorphologyConfig())
    truth = pd.read_parquet(world / "truth" / "objects.parquet", columns=["object_id", "kind"])
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
            "types": str(base / "types" / "labels"),
            "labels": None,
            "ari": ari,
            "classifier": None,
        }  # not saved: a classifier may come later

    from pipeline.images.training import ImageTrainConfig  # deferred: needs torch (images extra)

    click.echo(f"\nImages: classifier on the validated images ({base / 'model'}):")
    table = image_table(objects, statuses=("V",))
    config = ImageTrainConfig(size=48, canvas_px=96, width=12, epochs=epochs, patience=epochs)
    trained = train_and_report(table, config=config, out=str(base / "model"))
    click.echo("\nImages: every image classified on the cluster:")
    _forget_other_model(base / "classified", trained.model.model_id)
    classify_and_report(
        objects,
        str(base / "model"),
        str(base / "classified"),
        config=ClassifyConfig(partition_size=1000),
        client=client,
    )
    labels = str(base / "classified" / "labels")
    consistency_and_report(objects, labels, str(base / "consistency"))
    made = {
        "types": str(base / "types" / "labels"),
        "labels": labels,
        "ari": ari,
        "classifier": trained.metrics.get("test"),
        "model_id": trained.model.model_id,
    }
    done.write_text(json.dumps(made, indent=2, default=str))  # last: the image path is done
    return made


def _forget_other_model(folder: Path, model_id: str) -> None:
    """Remove the demo's labels of an earlier model (a retrained demo model differs)."""
    import shutil

    manifest = folder / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("model_id") != model_id:
        click.echo(f"  labels in {folder} are of another model; classifying again")
        shutil.rmtree(folder)
