"""``oceanfields images ...``: train, classify, morphological types, consistency report.

Registered on the main command group by :mod:`pipeline.cli.main`. Only the CLI prints.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import click

from pipeline.cli.output import CLUSTER_HELP

__all__ = ["images"]


def _parts_options(command: Any) -> Any:
    """Add SOURCE, MODEL_DIR and the options of the per-partition commands (classify, embed)."""
    for option in reversed(
        [
            click.argument("source"),
            click.argument("model_dir"),
            click.option("--out", required=True, help="Output folder (local path or URL)."),
            click.option("--cluster", "cluster_file", default=None, help=CLUSTER_HELP),
            click.option("--partition-size", default=None, type=int, help="Images per task."),
            click.option("--batch-size", default=None, type=int, help="Images per forward pass."),
        ]
    ):
        command = option(command)
    return command


def _statuses_option(text: str) -> Any:
    """Return the ``--statuses`` option (default validated ``V``) with its help text."""
    return click.option("--statuses", default="V", show_default=True, help=text)


@click.group()
def images() -> None:
    """Image classifier, morphological particle types and label checks."""


def _objects(source: str) -> Any:
    """Objects table of SOURCE, lazy where it can be (TSVs, parquet)."""
    from pipeline.images.dataset import read_objects

    return read_objects(source)


def _images_or_shards(source: str) -> Any:
    """Open SOURCE's shards (a .tar URL or glob, a folder with shards.json), else its objects."""
    from pipeline.images.shards import is_shard_source, open_shards

    return open_shards(source) if is_shard_source(source) else _objects(source)


class _EpochBar:
    """Epoch lines (and a tqdm bar on a terminal) while a classifier trains."""

    def __init__(self, epochs: int | None) -> None:
        self.bar: Any = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=epochs, desc="epochs", unit="epoch")

    def __call__(self, entry: dict[str, float]) -> None:
        line = (
            f"  epoch {entry['epoch']:>3}: loss {entry['loss']:.3f}, validation accuracy "
            f"{entry['val_accuracy']:.3f}, balanced {entry['val_balanced_accuracy']:.3f} "
            f"({entry['seconds']:.1f} s)"
        )
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(bacc=f"{entry['val_balanced_accuracy']:.3f}")
        else:
            click.echo(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _echo_scores(name: str, m: dict[str, Any], majority: float | None = None) -> None:
    extra = f"; majority class {majority:.3f}" if majority is not None else ""
    if "calibration_error" in m:
        extra += f"; calibration error {m['calibration_error']:.3f}"
    ab = m.get("abstention")
    if ab:
        kept = ab["precision_assigned"]
        extra += f"; unassigned {ab['share_unassigned']:.1%}" + (
            f" (precision of the others {kept:.3f})" if kept is not None else ""
        )
    click.echo(
        f"  {name}: balanced accuracy {m['balanced_accuracy']:.3f}, accuracy "
        f"{m['accuracy']:.3f}, macro F1 {m['macro_f1']:.3f} (n={m['n']}){extra}"
    )


@images.command("train")
@click.argument("source")
@click.option("--out", required=True, help="Model directory to write (local path or URL).")
@click.option("--from", "parent", default=None, help="Model directory to fine-tune.")
@_statuses_option("Annotation statuses trained on (comma-separated).")
@click.option(
    "--holdout",
    default=0.2,
    show_default=True,
    help="Stratified share held out and scored once at the end (0: none).",
)
@click.option("--epochs", default=None, type=int, help="Most epochs (default: from the data).")
@click.option("--size", default=None, type=int, help="Model input side (px).")
@click.option(
    "--canvas",
    "canvas_px",
    default=None,
    type=int,
    help="Constant-scale canvas side (px of the images; default: from the data).",
)
@click.option(
    "--width",
    default=None,
    type=int,
    help="Channels of the first CNN stage (default: from the data).",
)
@click.option("--arch", default=None, help="compact, timm:<name> or torchvision:<name>.")
@click.option(
    "--weights",
    "weights_file",
    default=None,
    help="Local pretrained backbone weights (nothing downloads).",
)
@click.option("--device", default=None, help="auto (CUDA when present), cpu, cuda.")
@click.option("--seed", default=None, type=int, help="Random seed.")
def train_command(
    source: str, out: str, parent: str | None, statuses: str, holdout: float, **options: Any
) -> None:
    """Train (or fine-tune with --from) an image classifier on labelled images.

    SOURCE: EcoTaxa export TSV(s), an objects .parquet, or a folder with one sub-folder of
    images per class. Writes OUT/model.json, weights.pt, metrics.json (accuracy, balanced
    accuracy, per-class precision/recall/F1, confusion matrix), history.json and
    confusion.png.
    """
    from pipeline.images.dataset import image_table
    from pipeline.images.model import load_model_dir
    from pipeline.images.training_config import ImageTrainConfig

    table = image_table(_objects(source), statuses=[s for s in statuses.split(",") if s])
    config = ImageTrainConfig(**{k: v for k, v in options.items() if v is not None})
    init = load_model_dir(parent) if parent else None
    click.echo(
        f"{len(table)} labelled images in {table['category'].nunique()} classes from "
        f"{source}" + (f"; fine-tuning {init.model_id}" if init else "")
    )
    res = train_and_report(table, config=config, out=out, init=init, holdout=holdout)
    click.echo(f"Model {res.model.model_id} written to {out} (metrics.json, confusion.png).")


def train_and_report(
    table: Any, *, config: Any, out: str, init: Any = None, holdout: float = 0.2
) -> Any:
    """Train with a stratified holdout and print the held-out scores (shared with the demo)."""
    from pipeline.images.outputs import train_with_holdout

    bar = _EpochBar(config.epochs)
    try:
        res, test = train_with_holdout(
            table, config=config, out=out, init=init, holdout=holdout, progress=bar
        )
    finally:
        bar.close()
    if res.dropped_classes:
        click.echo(f"  classes left out (< {config.min_per_class} images): {res.dropped_classes}")
    _echo_scores("validation", res.metrics["validation"])
    if "test" in res.metrics:
        majority = float(test["category"].value_counts(normalize=True).max())
        _echo_scores("held-out test", res.metrics["test"], majority)
    if len(res.quarantine):
        click.echo(f"  {len(res.quarantine)} image(s) quarantined (quarantine.parquet)")
    return res


@images.command("classify")
@_parts_options
@click.option("--top-k", default=None, type=int, help="Labels kept per image.")
@click.option("--device", default=None, help="auto (CUDA when present), cpu, cuda.")
def classify_command(
    source: str, model_dir: str, out: str, cluster_file: str | None, **options: Any
) -> None:
    """Classify every image of SOURCE with MODEL_DIR on a Dask cluster (resumable).

    SOURCE: an EcoTaxa export, an objects .parquet, a class-folder tree, or image shards
    ('oceanfields images shard': a folder, a *.tar glob, local or s3://; one task per
    shard). Writes OUT/labels/part-*.parquet (object_id, top-k labels and
    probabilities, model_id) and OUT/quarantine/part-*.parquet; finished partitions (or
    shards) are skipped on a re-run.
    """
    from pipeline.clusters.client import cluster_client
    from pipeline.images.classify import ClassifyConfig

    config = ClassifyConfig(**{k: v for k, v in options.items() if v is not None})
    with cluster_client(cluster_file) as client:
        click.echo(f"Dask dashboard: {client.dashboard_link}")
        table = _images_or_shards(source)
        classify_and_report(table, model_dir, out, config=config, client=client)


def classify_and_report(table: Any, model_dir: str, out: str, *, config: Any, client: Any) -> Any:
    """Classify with a progress bar and print what was done (shared with the demo)."""
    from pipeline.images.classify import classify_images

    bar: Any = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if not sys.stderr.isatty():
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, desc="partitions", unit="part")
        bar.n = done
        bar.refresh()

    try:
        res = classify_images(
            table, model_dir, out, config=config, client=client, progress=progress
        )
    finally:
        if bar is not None:
            bar.close()
    click.echo(
        f"  {res.model_id}: {res.partitions} partition(s), {res.skipped} already done, "
        f"{res.written} classified: {res.images} images in {res.seconds:.1f} s "
        f"({res.images_per_second:.0f} images/s), {res.quarantined} quarantined"
    )
    click.echo(f"  labels: {out.rstrip('/')}/labels/, quarantine: {out.rstrip('/')}/quarantine/")
    return res


@images.command("shard")
@click.argument("source")
@click.option("--out", required=True, help="Folder of the shards (local path or URL).")
@click.option(
    "--per-shard", default=5000, show_default=True, help="Vignettes per shard (tar file)."
)
@click.option(
    "--statuses", default=None, help="Pack only these annotation statuses (comma-separated)."
)
def shard_command(source: str, out: str, per_shard: int, statuses: str | None) -> None:
    """Pack the images of SOURCE into tar shards of --per-shard vignettes each.

    SOURCE: an EcoTaxa export, an objects .parquet or a class-folder tree. Writes
    OUT/shard-NNNNN.tar ({key}.png + {key}.json: object_id, category, status,
    pixel_size_um) and OUT/shards.json, last. Classify them with 'oceanfields images
    classify OUT MODEL_DIR --out ...'.
    """
    from pipeline.images.dataset import image_table
    from pipeline.images.shard_pack import write_shards

    chosen = [s for s in statuses.split(",") if s] if statuses else None
    table = image_table(_objects(source), statuses=chosen)
    res = write_shards(table, out, per_shard=per_shard)
    done = "already complete" if res.skipped else "written"
    click.echo(
        f"  {res.images} images in {res.shards} shard(s) of <= {per_shard} {done}: "
        f"{out.rstrip('/')}/shards.json"
    )
    if len(res.quarantine):
        click.echo(f"  {len(res.quarantine)} image(s) could not be read and were left out:")
        for row in res.quarantine.head(5).itertuples():
            click.echo(f"    {row.object_id}: {row.reason}")


@images.command("types")
@click.argument("source")
@click.option("--out", required=True, help="Output folder (local path or URL).")
@click.option("--n-types", default=None, type=int, help="Number of types (k-means k).")
@click.option(
    "--hierarchy-prefix",
    default=None,
    help="Objects whose lineage starts with this are particles (default not-living).",
)
@click.option("--cluster", "cluster_file", default=None, help=CLUSTER_HELP)
def types_command(
    source: str,
    out: str,
    n_types: int | None,
    hierarchy_prefix: str | None,
    cluster_file: str | None,
) -> None:
    """Fit morphological particle types (PCA + k-means) on SOURCE's objects and type them.

    Writes OUT/model.json, OUT/labels/part-0.parquet (object_id, label, distance),
    OUT/types.csv (count, share, feature means per type) and OUT/plate.png.
    """
    from pipeline.clusters.client import cluster_client
    from pipeline.images.morphology import MorphologyConfig

    options = {"n_types": n_types, "hierarchy_prefix": hierarchy_prefix}
    config = MorphologyConfig(**{k: v for k, v in options.items() if v is not None})
    with cluster_client(cluster_file) as client:
        click.echo(f"Dask dashboard: {client.dashboard_link}")
        types_and_report(_objects(source), out, config=config)


def types_and_report(objects: Any, out: str, *, config: Any) -> tuple[Any, Any]:
    """Fit, assign, describe and plot the types; print the table (shared with the demo)."""
    from pipeline.images.outputs import write_types

    model, labels, table = write_types(objects, out, config=config)
    root = out.rstrip("/")
    shown = [
        c
        for c in ("label", "count", "share", "esd", "area", "mean", "elongation", "circ")
        if c in table.columns
    ]
    click.echo(
        f"  {len(labels)} particles in {len(table)} types "
        f"({len(model.components)} principal components):"
    )
    click.echo("    " + table[shown].round(3).to_string(index=False).replace("\n", "\n    "))
    click.echo(f"  written: {root}/labels/, model.json, types.csv, plate.png")
    return model, labels


@images.command("consistency")
@click.argument("source")
@click.argument("labels")
@click.option("--out", required=True, help="Report folder (local path or URL).")
def consistency_command(source: str, labels: str, out: str) -> None:
    """Compare machine LABELS (a labels folder) with SOURCE's validated human labels.

    Writes OUT/index.html, consistency.json, confusion.png and worst_examples.png.
    """
    consistency_and_report(_objects(source), labels, out)


def consistency_and_report(objects: Any, labels: str, out: str) -> Any:
    """Compute, write and summarise the consistency report (shared with the demo)."""
    from pipeline.images.outputs import write_consistency

    result = write_consistency(objects, labels, out)
    worst = result.per_category.sort_values("disagreement", ascending=False).head(3)
    worst = worst.set_index("category")
    click.echo(
        f"  machine vs validated human labels: agreement {result.overall_agreement:.3f}; "
        f"most disagreement: " + ", ".join(f"{i} {r.disagreement:.2f}" for i, r in worst.iterrows())
    )
    click.echo(f"  report: {out.rstrip('/')}/index.html")
    return result


@images.command("qc")
@click.argument("source")
@click.option("--out", required=True, help="Report folder (local path or URL).")
@click.option("--labels", default=None, help="Machine labels folder to compare, optional.")
@_statuses_option("Annotation statuses whose categories are checked (comma-separated).")
@click.option("--near-bits", default=None, type=int, help="Most differing perceptual-hash bits.")
@click.option(
    "--cluster",
    "cluster_file",
    default=None,
    help="Cluster file (clusters/*.yaml) to hash on; default: threads of this process.",
)
def qc_command(
    source: str,
    out: str,
    labels: str | None,
    statuses: str,
    near_bits: int | None,
    cluster_file: str | None,
) -> None:
    """Quality control of SOURCE's human sorting: duplicates with two labels, and more.

    Lists exact (content hash) and near (perceptual hash) duplicates that carry
    different categories, counts duplicates within a class and, with --labels, the
    per-category disagreement of machine labels with the validated categories. Writes
    OUT/index.html, qc.json, conflicts.csv and conflicts.png; nothing is deleted.
    """
    from pipeline.clusters.client import cluster_client
    from pipeline.images.qc import QCConfig, quality_control
    from pipeline.images.qc_report import write_qc_report

    options: dict[str, Any] = {"statuses": tuple(s for s in statuses.split(",") if s)}
    if near_bits is not None:
        options["near_bits"] = near_bits
    config = QCConfig(**options)
    with contextlib.ExitStack() as stack:
        if cluster_file:  # else dask's threads: hashing is light (about 1 ms an image)
            client = stack.enter_context(cluster_client(cluster_file))
            click.echo(f"Dask dashboard: {client.dashboard_link}")
        result = quality_control(_objects(source), labels=labels, config=config)
        write_qc_report(result, out)
    doc = result.to_dict()
    click.echo(
        f"  {result.n_images} images: {doc['n_conflicts_exact']} exact and "
        f"{doc['n_conflicts_near']} near duplicate pair(s) with two categories"
    )
    for item in result.look_first():
        click.echo(f"  - {item}")
    click.echo(f"  report: {out.rstrip('/')}/index.html")


@images.command("embed")
@_parts_options
@click.option(
    "--handcrafted/--no-handcrafted",
    default=None,
    help="Add the handcrafted features (h_* columns); default on.",
)
@click.option("--tta/--no-tta", default=None, help="Average over 8 flips/rotations; default on.")
@click.option("--device", default=None, help="auto (CUDA when present), cpu, cuda.")
def embed_command(
    source: str, model_dir: str, out: str, cluster_file: str | None, **options: Any
) -> None:
    """Write per-object embeddings of SOURCE's images with MODEL_DIR (resumable).

    SOURCE as for 'images classify' (shards included). Writes
    OUT/embeddings/part-*.parquet (object_id, e_0000..., h_<feature>..., model_id) on the
    Dask cluster; finished partitions are skipped on a re-run. Fit a head on them in
    seconds with 'oceanfields images head'.
    """
    from pipeline.clusters.client import cluster_client
    from pipeline.images.classify import EmbedConfig, embed_images

    config = EmbedConfig(**{k: v for k, v in options.items() if v is not None})
    with cluster_client(cluster_file) as client:
        click.echo(f"Dask dashboard: {client.dashboard_link}")
        table = _images_or_shards(source)
        res = embed_images(table, model_dir, out, config=config, client=client)
    click.echo(
        f"  {res.model_id}: {res.partitions} partition(s), {res.skipped} already done, "
        f"{res.written} embedded: {res.images} images in {res.seconds:.1f} s, "
        f"{res.quarantined} quarantined; {out.rstrip('/')}/embeddings/"
    )


@images.command("head")
@click.argument("embeddings")
@click.argument("source")
@click.option("--out", required=True, help="Head folder to write (head.json).")
@_statuses_option("Annotation statuses whose categories are the labels (comma-separated).")
@click.option("--target-precision", default=None, type=float, help="Abstention precision.")
@click.option("--seed", default=None, type=int, help="Seed of the folds.")
def head_command(
    embeddings: str,
    source: str,
    out: str,
    statuses: str,
    target_precision: float | None,
    seed: int | None,
) -> None:
    """Fit a logistic-regression head on stored EMBEDDINGS for SOURCE's labels (seconds).

    EMBEDDINGS: the output folder of 'oceanfields images embed'. SOURCE: the labelled
    objects (EcoTaxa export, parquet, class folders). Writes OUT/head.json; apply it
    with 'oceanfields images apply-head'.
    """
    from pipeline.images.dataset import image_table
    from pipeline.images.heads import HeadConfig, fit_head_on, read_embeddings, save_head

    options = {"target_precision": target_precision, "seed": seed}
    config = HeadConfig(**{k: v for k, v in options.items() if v is not None})
    table = image_table(_objects(source), statuses=[s for s in statuses.split(",") if s])
    head = fit_head_on(read_embeddings(embeddings), table, config=config)
    save_head(head, out)
    cv = head.meta["cv_balanced_accuracy"][str(head.c)]
    click.echo(
        f"  head {head.head_id}: {head.meta['n_rows']} objects, {len(head.classes)} classes, "
        f"{len(head.columns)} columns; C={head.c:g}, cross-validated balanced accuracy "
        f"{cv:.3f}, fitted in {head.meta['seconds']:.1f} s; written to {out}"
    )


@images.command("apply-head")
@click.argument("embeddings")
@click.argument("head_dir")
@click.option("--out", required=True, help="Output folder (labels/ under it).")
def apply_head_command(embeddings: str, head_dir: str, out: str) -> None:
    """Label stored EMBEDDINGS with the head in HEAD_DIR (labels/part-*.parquet)."""
    import dask

    from pipeline.images.heads import head_labels, load_head, read_embeddings
    from pipeline.store import as_store

    head = load_head(head_dir)
    store = as_store(out)

    def write(part: Any, index: int) -> int:
        store.write_parquet(f"labels/part-{index:05d}.parquet", head_labels(head, part))
        return len(part)

    parts = read_embeddings(embeddings).to_delayed()
    n = sum(dask.compute(*[dask.delayed(write)(p, i) for i, p in enumerate(parts)]))
    click.echo(f"  {n} objects labelled by head {head.head_id}: {store.path('labels')}/")
