"""Classify millions of images on Dask workers: batched, resumable, GPU where present.

:func:`classify_images` cuts the image table into partitions (``partition_size`` rows;
a dask table keeps its own partitions) and sends one task per partition to the cluster;
given a :class:`~pipeline.images.shards.ShardSet` (tar shards of vignettes,
:func:`~pipeline.images.shards.open_shards`) instead, one task per shard, which streams
the shard's members from one open file (no request per image). On a worker, a task:

- loads the model directory **once per worker process** (a process-wide cache keyed by
  the model's URL and id; later tasks reuse it) onto the worker's device: CUDA when the
  process sees a GPU (``device="auto"``), else the CPU with torch threads set to the
  worker's share of its host's cores (cores / threads of the workers on the host);
- reads and decodes the images of the next batch in a **thread pool** while the device
  runs the current one (one batch of prefetch: the device never waits on storage when
  decoding keeps up); from a shard, the handcrafted features a head needs come from the
  same decode (from image files they are read again);
- runs batched inference (on CUDA: pinned memory, non-blocking copies, bf16 autocast,
  channels-last; :func:`pipeline.images.model.predict_proba`);
- writes ``labels/part-NNNNN.parquet`` (``object_id, label, prob, predicted, label_2,
  prob_2, ..., model_id``; read them with :func:`pipeline.images.labels.read_labels` on
  ``OUT/labels``). ``predicted`` is the top-1 class; ``label`` is the same, or
  ``unassigned`` where ``prob`` is below that class's threshold recorded with the model
  (:mod:`pipeline.images.abstention`; models without thresholds never abstain)
  and ``quarantine/part-NNNNN.parquet`` (``object_id, image, reason``).

With ``gpu=True`` (or ``"auto"`` on a cluster whose workers declare the Dask resource
``GPU``), tasks ask for ``resources={"GPU": 1}``, so they run on the GPU workers only.

**Resumable**: a partition is done when its labels part exists (written last, whole,
through the :class:`~pipeline.store.OutputStore`: a temporary name renamed on a local disk,
one PUT on an object store). A re-run skips the
done partitions. ``OUT/manifest.json`` records the model id, the partition size and a
fingerprint of the table's object ids: a re-run with another model or table into the
same ``OUT`` is refused (naming what differs) instead of mixing labels.

Developer note: tasks receive the table partition by reference (dask ``to_delayed``
parts, or scattered pandas slices) or the shard's URL, never the model: the model
directory's URL travels and each worker process reads it once. The graph has one task
per partition or shard.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from pipeline.config import check_choice, check_count
from pipeline.errors import ConfigError, StoreMismatchError
from pipeline.images.dataset import prepare_images
from pipeline.images.frames import embeddings_frame, handcrafted_frame, labels_frame
from pipeline.images.heads import head_labels
from pipeline.images.shards import ImageBatch, ShardSet, shard_batches
from pipeline.store import OutputStore, as_store

if TYPE_CHECKING:
    from distributed import Client

    from pipeline.images.model import ImageModel

__all__ = [
    "ClassifyConfig",
    "ClassifyResult",
    "EmbedConfig",
    "classify_images",
    "embed_images",
]

logger = logging.getLogger(__name__)

_MODELS: dict[tuple[str, str], Any] = {}
_POOLS: dict[int, ThreadPoolExecutor] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True, kw_only=True)
class ClassifyConfig:
    """Options of :func:`classify_images` (defaults live here only).

    Attributes
    ----------
    partition_size : int
        Images per task (a pandas table is cut into partitions of this size).
    batch_size : int
        Images per forward pass.
    top_k : int
        Labels and probabilities kept per image.
    threads : int
        Image-reading threads per worker process.
    device : str
        ``"auto"`` (CUDA when the worker sees one), ``"cpu"``, ``"cuda"``.
    gpu : bool or "auto"
        Ask for the Dask worker resource ``GPU`` (``"auto"``: when workers declare it).
    """

    partition_size: int = 4096
    batch_size: int = 256
    top_k: int = 3
    threads: int = 4
    device: str = "auto"
    gpu: bool | Literal["auto"] = "auto"

    def __post_init__(self) -> None:
        """Check the options; raise ConfigError naming the key."""
        for key in ("partition_size", "batch_size", "top_k", "threads"):
            check_count(f"images.classify.{key}", getattr(self, key), 1)
        check_choice("images.classify.gpu", self.gpu, (True, False, "auto"))


@dataclass(frozen=True, kw_only=True)
class EmbedConfig(ClassifyConfig):
    """Options of :func:`embed_images`: those of :class:`ClassifyConfig` and two more.

    Attributes
    ----------
    tta : bool
        Average each embedding over the 8 flips/rotations (8x the cost).
    handcrafted : bool
        Add the handcrafted features (``h_*`` columns; each image is read twice).
    """

    tta: bool = True
    handcrafted: bool = True


@dataclass
class ClassifyResult:
    """What :func:`classify_images` did.

    Attributes
    ----------
    out : str
        Output URL (``labels/`` and ``quarantine/`` under it).
    model_id : str
    partitions : int
        Partitions of the table (shards of a shard set).
    skipped : int
        Partitions already done before this call.
    written : int
        Partitions classified by this call.
    images : int
        Images classified by this call.
    quarantined : int
        Images of this call that could not be read.
    seconds : float
    """

    out: str
    model_id: str
    partitions: int
    skipped: int
    written: int
    images: int
    quarantined: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        """End-to-end throughput of this call."""
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def _model(url: str, storage_options: Mapping[str, Any] | None, device: str) -> ImageModel:
    """Return the worker process's copy of the model (loaded on first use)."""
    from pipeline.images.model import (  # deferred: needs torch (images extra)
        load_model_dir,
        resolve_device,
    )

    with _LOCK:
        key = (url, device)
        if key not in _MODELS:
            dev = resolve_device(device)
            _MODELS[key] = load_model_dir(url, storage_options=storage_options, device=dev)
            logger.info(
                "loaded image model %s on %s in process %d", _MODELS[key].model_id, dev, os.getpid()
            )
        return _MODELS[key]


def _pool(threads: int) -> ThreadPoolExecutor:
    with _LOCK:
        if threads not in _POOLS:
            _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="oceanfields-img")
        return _POOLS[threads]


def _torch_threads() -> None:
    """Torch CPU threads = this worker's share of its host's cores (outside a worker: all).

    The cores are divided by the threads of all the workers on the host, not of this
    worker alone: on 2 cores, 2 single-threaded workers of 2 torch threads each spent
    twice the CPU time an image of one process (their threads spin against each other;
    ``benchmarks/results/shards_before_host_threads.json``).
    """
    import torch

    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        worker = None
    threads = _host_threads(worker) if worker is not None else 1
    share = max(1, (os.cpu_count() or 1) // threads)
    if torch.get_num_threads() != share:
        logger.info("torch threads: %d (%d worker threads on this host)", share, threads)
        torch.set_num_threads(share)


def _host_threads(worker: Any) -> int:
    """Threads of all the workers on ``worker``'s host (its own when the scheduler is not asked)."""
    own = max(1, int(worker.state.nthreads))
    try:
        from distributed import get_client
        from distributed.comm import get_address_host

        host = get_address_host(worker.address)
        per_worker = get_client().nthreads()
        return max(own, sum(n for a, n in per_worker.items() if get_address_host(a) == host))
    except Exception as err:  # no scheduler answer: this worker's threads only
        logger.debug("torch threads: workers of this host unknown (%s)", err)
        return own


def _classify_part(
    part: pd.DataFrame | str,
    index: int,
    *,
    model_url: str,
    store: OutputStore,
    config: ClassifyConfig,
    storage_options: Mapping[str, Any] | None,
    kind: str = "labels",
) -> dict[str, int]:
    """Labels (or embeddings, ``kind="embeddings"``) of a partition or a shard, written whole."""
    from pipeline.images.model import embed, predict_proba  # deferred: needs torch

    model = _model(model_url, storage_options, config.device)
    device = next(model.network.parameters()).device
    if device.type == "cpu":
        _torch_threads()
    pool = _pool(config.threads)
    head = model.head
    mean_head = head is not None and model.meta.get("head_mode") == "mean"
    vectors = kind == "embeddings" or (head is not None and not mean_head)
    tta = bool(model.meta.get("tta", False)) or (vectors and getattr(config, "tta", True))
    handcrafted = (kind == "embeddings" and getattr(config, "handcrafted", False)) or (
        head is not None and any(c.startswith("h_") for c in head.columns)
    )
    if isinstance(part, str):  # a shard: its members streamed, features from the same decode
        batches = shard_batches(
            part,
            model.preprocess,
            batch_size=config.batch_size,
            pool=pool,
            features=(vectors and handcrafted) or mean_head,
            storage_options=storage_options,
        )
    else:
        batches = _table_batches(part, model.preprocess, config, pool, storage_options)

    def run(batch: ImageBatch) -> Any:
        forward = embed if vectors else predict_proba
        p = batch.prepared
        return forward(
            model, p.pixels, p.extras, batch_size=config.batch_size, device=device, tta=tta
        )

    read: list[ImageBatch] = []
    outputs = []
    with ThreadPoolExecutor(1) as prefetch:  # reads the next batch while this one runs
        pending = prefetch.submit(next, batches, None)
        while (batch := pending.result()) is not None:
            pending = prefetch.submit(next, batches, None)
            outputs.append(run(batch))
            batch.prepared.pixels = batch.prepared.pixels[:0]  # keep the ids, not the pixels
            read.append(batch)
    ok = np.concatenate([b.prepared.ok for b in read]) if read else np.zeros(0, bool)
    ids = np.array([i for b in read for i in b.object_ids], dtype=object).astype(str)
    urls = np.array([u for b in read for u in b.images], dtype=object).astype(str)
    object_ids, ok_urls = ids[ok], urls[ok].tolist()
    features = (
        pd.concat([b.features for b in read], ignore_index=True)
        if read and all(b.features is not None for b in read)
        else None
    )
    if vectors:
        frame = embeddings_frame(
            object_ids,
            outputs,
            ok_urls,
            handcrafted=handcrafted,
            storage_options=storage_options,
            features=features,
        )
        if kind == "labels":
            result = head_labels(head, frame, top_k=config.top_k)
            result["model_id"] = model.model_id
        else:
            result = frame.assign(model_id=model.model_id)
    else:
        if mean_head:  # the network's and the handcrafted head's probabilities, averaged
            import torch

            hand = handcrafted_frame(
                object_ids, ok_urls, storage_options=storage_options, features=features
            )
            p = torch.cat(outputs) if outputs else torch.zeros((0, len(model.classes)))
            outputs = [(p + torch.as_tensor(head.predict_proba(hand), dtype=p.dtype)) / 2]
        result = labels_frame(object_ids, outputs, model, config.top_k)
    reasons = [r for b in read for r in b.prepared.reasons if r]
    errors = [e for b in read for e in b.errors]
    bad = pd.DataFrame(
        {"object_id": ids[~ok], "image": urls[~ok], "reason": pd.Series(reasons, dtype=str)}
    )
    if errors:
        bad = pd.concat([bad, pd.DataFrame(errors, columns=bad.columns)], ignore_index=True)
    _write_part(store, "quarantine", index, bad.astype(str))
    _write_part(store, kind, index, result)  # last: marks the part done
    return {"images": int(ok.sum()), "quarantined": len(bad)}


def _table_batches(
    part: pd.DataFrame,
    pre: Any,
    config: ClassifyConfig,
    pool: ThreadPoolExecutor,
    storage_options: Mapping[str, Any] | None,
) -> Iterator[ImageBatch]:
    """Batches of a table partition's images, each read by URL in the pool."""
    ids = part["object_id"].astype(str).tolist()
    urls = part["image"].astype(str).tolist()
    sizes = (
        part["pixel_size_um"].astype("float64").tolist()
        if "pixel_size_um" in part
        else [math.nan] * len(part)
    )
    for start in range(0, len(urls), config.batch_size):
        stop = start + config.batch_size
        prepared = prepare_images(
            urls[start:stop],
            pre,
            pixel_size_um=sizes[start:stop],
            storage_options=storage_options,
            pool=pool,
        )
        yield ImageBatch(ids[start:stop], urls[start:stop], prepared)


def _part_name(kind: str, index: int) -> str:
    return f"{kind}/part-{index:05d}.parquet"


def _write_part(store: OutputStore, kind: str, index: int, frame: pd.DataFrame) -> None:
    """Write one part whole or not at all (a labels part marks its partition done)."""
    store.write_parquet(_part_name(kind, index), frame)


def _as_dask(table: pd.DataFrame | dd.DataFrame, partition_size: int) -> dd.DataFrame:
    columns = [c for c in ("object_id", "image", "pixel_size_um") if c in table.columns]
    missing = {"object_id", "image"} - set(columns)
    if missing:
        raise ConfigError(
            f"image table has no column(s) {sorted(missing)}; found {list(table.columns)[:20]}."
        )
    if isinstance(table, dd.DataFrame):
        return table[columns]
    n_parts = max(1, math.ceil(len(table) / partition_size))
    frame = table[columns].reset_index(drop=True)
    return dd.from_pandas(frame, npartitions=n_parts, sort=False)


def _fingerprint(ddf: dd.DataFrame) -> str:
    """Hash of the object ids per partition (one small task per partition)."""
    per_part = ddf["object_id"].map_partitions(
        lambda s: pd.Series([hashlib.sha256("\n".join(s.astype(str)).encode()).hexdigest()]),
        meta=("object_id", str),
    )
    digest = hashlib.sha256("|".join(per_part.compute().tolist()).encode()).hexdigest()
    return digest[:16]


def _manifest(store: OutputStore, doc: dict[str, Any]) -> None:
    if store.exists("manifest.json"):
        old = store.read_json("manifest.json")
        differ = [k for k in ("model_id", "table", "partitions") if old.get(k) != doc[k]]
        if differ:
            what = ", ".join(f"{k} {old.get(k)!r} != {doc[k]!r}" for k in differ)
            raise StoreMismatchError(
                f"{store.url}: holds labels of another run ({what}); classify into a new "
                "--out, or delete it."
            )
        return
    store.write_json("manifest.json", doc, indent=2, newline=False)


def classify_images(
    table: pd.DataFrame | dd.DataFrame | ShardSet,
    model_url: str,
    out: str | OutputStore,
    *,
    config: ClassifyConfig | None = None,
    client: Client | None = None,
    storage_options: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ClassifyResult:
    """Classify the images of a table on a Dask cluster; write labels parts (module docstring).

    Parameters
    ----------
    table : pandas or dask DataFrame, or ShardSet
        ``object_id``, ``image`` (URL) and optionally ``pixel_size_um``
        (:func:`pipeline.images.dataset.image_table`, or the objects table itself); or
        shards of vignettes (:func:`pipeline.images.shards.open_shards`): one task each.
    model_url : str
        Model directory (:func:`pipeline.images.model.save_model_dir`), readable from
        the workers.
    out : str or OutputStore
        Output folder (local or fsspec URL, or its store) readable and writable from the
        workers.
    config : ClassifyConfig, optional
    client : distributed.Client, optional
        Where the tasks run (default: dask's current scheduler).
    storage_options : mapping, optional
        fsspec options of the images, the model and ``out`` (when it is a URL).
    progress : callable, optional
        Called ``progress(done, total)`` as partitions finish.

    Returns
    -------
    ClassifyResult

    Raises
    ------
    StoreMismatchError
        ``out`` holds labels of another model or table.
    """
    options = {"client": client, "storage_options": storage_options, "progress": progress}
    return _run_parts(
        table, model_url, out, kind="labels", config=config or ClassifyConfig(), **options
    )


def embed_images(
    table: pd.DataFrame | dd.DataFrame | ShardSet,
    model_url: str,
    out: str | OutputStore,
    *,
    config: EmbedConfig | None = None,
    client: Client | None = None,
    storage_options: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ClassifyResult:
    """Write per-object embeddings of a table's images (resumable, on the cluster).

    As :func:`classify_images`, but each partition writes
    ``OUT/embeddings/part-NNNNN.parquet``: ``object_id``, ``e_0000 ...`` (the vector the
    classifier head reads, :func:`pipeline.images.model.embed`, averaged over the 8
    flips/rotations with ``tta``), with ``handcrafted`` the ``h_<feature>`` columns of
    :mod:`pipeline.images.handcrafted`, and ``model_id``. Heads are fitted on them in
    seconds (:mod:`pipeline.images.heads`).

    Parameters
    ----------
    table, model_url, out, client, storage_options, progress
        As :func:`classify_images`.
    config : EmbedConfig, optional

    Returns
    -------
    ClassifyResult
    """
    options = {"client": client, "storage_options": storage_options, "progress": progress}
    return _run_parts(
        table, model_url, out, kind="embeddings", config=config or EmbedConfig(), **options
    )


def _run_parts(
    table: pd.DataFrame | dd.DataFrame | ShardSet,
    model_url: str,
    out: str | OutputStore,
    *,
    kind: str,
    config: ClassifyConfig,
    client: Client | None,
    storage_options: Mapping[str, Any] | None,
    progress: Callable[[int, int], None] | None,
) -> ClassifyResult:
    from pipeline.images.model import load_model_dir  # deferred: needs torch (images extra)

    store = as_store(out, storage_options=storage_options)
    t0 = time.perf_counter()
    model_id = load_model_dir(model_url, storage_options=storage_options).model_id
    if isinstance(table, ShardSet):  # one task per shard; the shards' names and sizes
        parts, fingerprint = list(table.urls), table.fingerprint
    else:
        ddf = _as_dask(table, config.partition_size)
        parts, fingerprint = ddf.to_delayed(), _fingerprint(ddf)
    n_parts = len(parts)
    _manifest(
        store,
        {
            "kind": kind,
            "model_id": model_id,
            "model": model_url,
            "table": fingerprint,
            "partitions": n_parts,
            "config": asdict(config),
            **({"shards": list(table.urls)} if isinstance(table, ShardSet) else {}),
        },
    )
    done = set(store.listdir(kind))
    todo = [i for i in range(n_parts) if _part_name(kind, i).split("/")[-1] not in done]
    logger.info(
        "%s: %d partitions, %d already done, %d to do",
        kind,
        n_parts,
        n_parts - len(todo),
        len(todo),
    )
    task = dask.delayed(_classify_part, pure=False)
    resources = _resources(config, client)
    with dask.annotate(resources=resources) if resources else contextlib.nullcontext():
        tasks = [
            task(
                parts[i],
                i,
                model_url=model_url,
                store=store,
                config=config,
                storage_options=storage_options,
                kind=kind,
            )
            for i in todo
        ]
    counts = _compute(tasks, client, progress)
    return ClassifyResult(
        out=store.url,
        model_id=model_id,
        partitions=n_parts,
        skipped=n_parts - len(todo),
        written=len(todo),
        images=sum(c["images"] for c in counts),
        quarantined=sum(c["quarantined"] for c in counts),
        seconds=time.perf_counter() - t0,
    )


def _resources(config: ClassifyConfig, client: Client | None) -> dict[str, float] | None:
    if config.gpu is True:
        return {"GPU": 1}
    if config.gpu == "auto" and client is not None:
        workers = client.scheduler_info().get("workers", {}).values()
        if any(w.get("resources", {}).get("GPU") for w in workers):
            logger.info("classify: workers declare the GPU resource; tasks ask for GPU=1")
            return {"GPU": 1}
    return None


def _compute(
    tasks: list[Any], client: Client | None, progress: Callable[[int, int], None] | None
) -> list[dict[str, int]]:
    if not tasks:
        return []
    if client is None:
        return list(dask.compute(*tasks))
    from distributed import as_completed

    futures = client.compute(tasks, optimize_graph=False)
    results = []
    for i, fut in enumerate(as_completed(futures, loop=client.loop), start=1):
        results.append(fut.result())
        if progress is not None:
            progress(i, len(futures))
    return results
