"""Benchmark: image classification read from tar shards vs the model's forward pass alone.

For each model, side by side in one run (same model, device and batch size):

- ``forward``: prepared images (and, for the ensemble, their handcrafted features)
  already in memory, through :func:`pipeline.images.model.predict_proba` (8 views for
  the ensemble, whose handcrafted head's probabilities are averaged in): the ceiling;
  ``forward_concurrent`` runs it in ``--workers`` threads at once, as the cluster runs
  shards;
- ``process``: :func:`pipeline.images.classify.classify_images` on the shard set in this
  process (dask's threads): one task per shard, members streamed from one open file,
  decoded (and described) in the thread pool, inference, parquet parts written;
- ``cluster``: the same on a ``LocalCluster`` of ``--workers`` single-threaded processes;
  ``cluster_1`` on a ``LocalCluster`` of one such process: ``scaling_over_one_worker``
  (``cluster`` / ``cluster_1`` images/s) is how the workers scale on this machine.

Models: ``compact`` (the compact CNN of ``bench_images.py``: width 16, one view, no head)
and ``default`` (what ``images train`` makes for fewer than 200,000 images: width 32, 8
test-time views, averaged with a logistic head on the handcrafted features). The shards
hold ``--images`` demo vignettes (:func:`pipeline.demo.ecotaxa_writer.draw_object`,
16-128 px PNGs, ``--unique`` distinct drawings cycled under distinct object ids: decoding
costs the same) in shards of ``--per-shard``; the ensemble, ~20x slower an image on a
CPU, is timed on ``--default-images`` of them in shards of ``--default-per-shard``.
Forward rates are measured on at most ``--forward-images`` images, before and after the
end-to-end runs (the best of both). The 2 cores of the development machine are shared
with other jobs, so each figure comes with the load average and, beside images per wall
second, images per CPU second (user + system of this process and of the workers): the
ratio of those is what the pipeline costs over the forward pass whatever the others run.
The device is CUDA where there is one (``--device auto``): the same script runs on a GPU
worker. Writes ``benchmarks/results/shards.json``.
Run: ``python benchmarks/bench_shards.py [--images 100000] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import distributed
import numpy as np
import pandas as pd
import torch
from PIL import Image

from pipeline.demo.ecotaxa_writer import HIERARCHY, draw_object
from pipeline.images.classify import ClassifyConfig, classify_images
from pipeline.images.dataset import Preprocess, prepare_bytes
from pipeline.images.handcrafted import FEATURE_NAMES, handcrafted_features
from pipeline.images.heads import HeadConfig, fit_head
from pipeline.images.model import (
    ImageModel,
    build_network,
    predict_proba,
    resolve_device,
    save_model_dir,
)
from pipeline.images.shard_pack import shard_bytes
from pipeline.images.shards import open_shards


def draw_vignettes(n: int, seed: int = 0) -> tuple[list[bytes], list[str]]:
    """``n`` PNG vignettes of the demo kinds (bytes) and their kinds."""
    rng = np.random.default_rng(seed)
    kinds = sorted(HIERARCHY)
    blobs, labels = [], []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        image, _ = draw_object(kind, float(rng.uniform(1.0, 6.0)), 0.092, rng)
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        blobs.append(buf.getvalue())
        labels.append(kind)
    return blobs, labels


def write_set(folder: Path, blobs: list[bytes], labels: list[str], n: int, per_shard: int) -> int:
    """Write ``n`` vignettes (cycling ``blobs``) as shards; return the bytes written."""
    folder.mkdir(parents=True)
    size = 0
    for j, start in enumerate(range(0, n, per_shard)):
        records = [
            (
                f"{i:08d}",
                ".png",
                blobs[i % len(blobs)],
                {"object_id": f"o{i:08d}", "category": labels[i % len(blobs)]},
            )
            for i in range(start, min(n, start + per_shard))
        ]
        raw = shard_bytes(records)
        (folder / f"shard-{j:05d}.tar").write_bytes(raw)
        size += len(raw)
    return size


def make_model(kind: str, classes: list[str], blobs: list[bytes], labels: list[str]):
    """The compact CNN alone, or the default ensemble (8 views + handcrafted head)."""
    torch.manual_seed(0)
    width = 16 if kind == "compact" else 32
    network = build_network("compact", len(classes), params={"width": width}).eval()
    model = ImageModel(
        network=network,
        classes=classes,
        preprocess=Preprocess(size=64, canvas_px=96),
        params={"width": width},
    )
    if kind == "default":
        rows = range(min(len(blobs), 800))
        feats = pd.DataFrame(
            [handcrafted_features(np.asarray(Image.open(io.BytesIO(blobs[i])))) for i in rows],
            columns=list(FEATURE_NAMES),
        )
        model.head = fit_head(
            feats.astype("float32").add_prefix("h_"),
            [labels[i] for i in rows],
            config=HeadConfig(target_precision=None),
        )
        model.meta = {"head_mode": "mean", "tta": True}
    return model


def forward_seconds(model, prepared, features, batch_size, device, *, streams: int) -> float:
    """Forward pass of the prepared images (and head on their features), ``streams`` at once."""
    parts = np.array_split(np.arange(len(prepared.pixels)), streams)
    tta = bool(model.meta.get("tta"))

    def run(idx):
        p = predict_proba(
            model,
            prepared.pixels[idx],
            prepared.extras[idx],
            batch_size=batch_size,
            device=device,
            tta=tta,
        )
        if model.head is not None:
            p = (p + torch.as_tensor(model.head.predict_proba(features.iloc[idx]))) / 2
        return p

    start = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(run, parts))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def cpu_seconds(client=None) -> float:
    """CPU seconds (user + system) used so far by this process and the cluster's workers."""
    total = time.process_time()
    if client is not None:
        total += sum(client.run(time.process_time).values())
    return total


def measured(fn, client=None):
    """``fn()``, its wall seconds and the CPU seconds it took (here and on the workers)."""
    c0, w0 = cpu_seconds(client), time.perf_counter()
    out = fn()
    wall = time.perf_counter() - w0
    return out, wall, cpu_seconds(client) - c0


def load() -> float:
    return round(os.getloadavg()[0], 2)


def bench_model(kind, args, tmp, blobs, labels, device, client, client_1) -> dict:
    classes = sorted(HIERARCHY)
    model = make_model(kind, classes, blobs, labels)
    model_dir = str(tmp / f"model-{kind}")
    save_model_dir(model, model_dir)
    model.network.to(device)
    shards = open_shards(str(tmp / f"shards-{kind}"))
    n = args.images if kind == "compact" else min(args.images, args.default_images)
    n_fwd = min(n, args.forward_images)
    idx = [i % len(blobs) for i in range(n_fwd)]
    features = None
    if model.head is not None:
        feats = [handcrafted_features(np.asarray(Image.open(io.BytesIO(blobs[i])))) for i in idx]
        features = pd.DataFrame(feats, columns=list(FEATURE_NAMES)).astype("float32")
        features = features.add_prefix("h_")
    prepared = prepare_bytes([blobs[i] for i in idx], [str(i) for i in idx], model.preprocess)
    warm = prepared.pixels[: args.batch_size], prepared.extras[: args.batch_size]
    predict_proba(model, *warm, batch_size=args.batch_size, device=device)
    fig: dict = {"images": n, "shards": len(shards.urls), "forward_images": n_fwd}
    loads = {"before": load()}
    config = ClassifyConfig(batch_size=args.batch_size, device=args.device)

    def forward(streams):
        return measured(
            lambda: forward_seconds(
                model, prepared, features, args.batch_size, device, streams=streams
            )
        )

    fwd = [forward(1)]  # measured again after the end-to-end runs: the best of both
    fwd2 = [forward(args.workers)]
    loads["forward"] = load()
    process, t_p, cpu_p = measured(
        lambda: classify_images(shards, model_dir, str(tmp / f"out-{kind}-p"), config=config)
    )
    loads["process"] = load()
    cluster, t_c, cpu_c = measured(
        lambda: classify_images(
            shards, model_dir, str(tmp / f"out-{kind}-c"), config=config, client=client
        ),
        client,
    )
    loads["cluster"] = load()
    cluster_1, t_c1, cpu_c1 = measured(
        lambda: classify_images(
            shards, model_dir, str(tmp / f"out-{kind}-c1"), config=config, client=client_1
        ),
        client_1,
    )
    loads["cluster_1"] = load()
    fwd.append(forward(1))
    fwd2.append(forward(args.workers))
    loads["forward_after"] = load()
    assert process.images == cluster.images == cluster_1.images == n, (
        process.images,
        cluster.images,
        cluster_1.images,
        n,
    )
    _, t_f, cpu_f = min(fwd, key=lambda m: m[1])
    _, t_f2, cpu_f2 = min(fwd2, key=lambda m: m[1])
    rate = {
        "forward": n_fwd / t_f,
        "forward_concurrent": n_fwd / t_f2,
        "process": n / t_p,
        "cluster": n / t_c,
        "cluster_1": n / t_c1,
    }
    per_cpu = {
        "forward": n_fwd / cpu_f,
        "forward_concurrent": n_fwd / cpu_f2,
        "process": n / cpu_p,
        "cluster": n / cpu_c,
        "cluster_1": n / cpu_c1,
    }
    fig.update(
        {
            "images_per_s": rate,
            "images_per_cpu_s": per_cpu,
            "ratio_process_over_forward": rate["process"] / rate["forward"],
            "ratio_cluster_over_forward": rate["cluster"] / rate["forward"],
            "ratio_cluster_over_forward_concurrent": rate["cluster"] / rate["forward_concurrent"],
            "ratio_cluster_over_process": rate["cluster"] / rate["process"],
            "scaling_over_one_worker": rate["cluster"] / rate["cluster_1"],
            "ratio_per_cpu_process_over_forward": per_cpu["process"] / per_cpu["forward"],
            "ratio_per_cpu_cluster_over_forward": per_cpu["cluster"] / per_cpu["forward"],
            "forward_runs_seconds": {
                "one_stream": [m[1] for m in fwd],
                "concurrent": [m[1] for m in fwd2],
            },
            "seconds": {
                "forward": t_f,
                "forward_concurrent": t_f2,
                "process": t_p,
                "cluster": t_c,
                "cluster_1": t_c1,
            },
            "cpu_seconds": {
                "forward": cpu_f,
                "forward_concurrent": cpu_f2,
                "process": cpu_p,
                "cluster_workers_and_client": cpu_c,
                "cluster_1_worker_and_client": cpu_c1,
            },
            "load_average_1min": loads,
            "model": {
                "arch": "compact",
                "width": model.params["width"],
                "input": model.preprocess.size,
                "views": 8 if model.meta.get("tta") else 1,
                "handcrafted_head": model.head is not None,
                "parameters": sum(p.numel() for p in model.network.parameters()),
            },
        }
    )
    print(kind, json.dumps({k: v for k, v in fig.items() if k != "seconds"}, indent=1))
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--default-images", type=int, default=2000)
    parser.add_argument("--default-per-shard", type=int, default=1000)
    parser.add_argument("--forward-images", type=int, default=10_000)
    parser.add_argument("--unique", type=int, default=10_000)
    parser.add_argument("--per-shard", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models", default="compact,default")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "shards.json"))
    parser.add_argument(
        "--note",
        default="see the load averages beside each figure",
        help="machine state (shared with other jobs or quiet)",
    )
    args = parser.parse_args()
    device = resolve_device(args.device)
    tmp = Path(tempfile.mkdtemp(prefix="bench-shards-"))
    started = {"load": load(), "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        t0 = time.perf_counter()
        blobs, labels = draw_vignettes(min(args.unique, args.images))
        t_draw = time.perf_counter() - t0
        t0 = time.perf_counter()
        size = write_set(tmp / "shards-compact", blobs, labels, args.images, args.per_shard)
        t_pack = time.perf_counter() - t0
        n_default = min(args.images, args.default_images)
        write_set(tmp / "shards-default", blobs, labels, n_default, args.default_per_shard)
        results = {}
        with (
            distributed.LocalCluster(
                n_workers=args.workers, threads_per_worker=1, dashboard_address=None
            ) as cluster,
            distributed.Client(cluster, set_as_default=False) as client,
            distributed.LocalCluster(
                n_workers=1, threads_per_worker=1, dashboard_address=None
            ) as cluster_1,
            distributed.Client(cluster_1, set_as_default=False) as client_1,
        ):
            for kind in args.models.split(","):
                results[kind] = bench_model(
                    kind, args, tmp, blobs, labels, device, client, client_1
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report = {
        "name": "shards: classify from tar shards vs forward alone (same model, device, batch)",
        "params": {
            "images": args.images,
            "default_images": args.default_images,
            "default_per_shard": args.default_per_shard,
            "forward_images": args.forward_images,
            "unique_drawings": min(args.unique, args.images),
            "per_shard": args.per_shard,
            "batch_size": args.batch_size,
            "workers": args.workers,
            "threads_per_worker": 1,
            "device": str(device),
        },
        "set": {
            "shards": -(-args.images // args.per_shard),
            "megabytes": size / 1e6,
            "mean_vignette_bytes": size / args.images,
            "seconds_draw": t_draw,
            "seconds_pack": t_pack,
        },
        "results": results,
        "started": started,
        "ended": {"load": load(), "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "versions": {
            "torch": torch.__version__,
            "distributed": distributed.__version__,
            "python": platform.python_version(),
        },
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "note": args.note,
        },
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
