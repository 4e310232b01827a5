"""Benchmark: image classification end to end vs the model's forward pass alone.

Same model, device and batch size, measured side by side in one run:

- ``forward``: batches of prepared images already on the device, through the network
  (:func:`pipeline.images.model.predict_proba`): the ceiling the pipeline can reach;
- ``end_to_end_process``: :func:`pipeline.images.classify.classify_images` in this process
  (read PNGs, decode, pad, resize in the thread pool, infer, write parquet parts);
- ``end_to_end_cluster``: the same on a ``LocalCluster`` of ``--workers`` processes (one
  model load per worker process, partitions as tasks).

Images are demo-world vignettes drawn by :func:`pipeline.demo.ecotaxa_writer.draw_object`
(16-128 px PNGs). The device is CUDA when this machine has one (``--device auto``), so
the script runs unchanged on a GPU worker. Writes ``benchmarks/results/images.json``.
``forward_concurrent`` runs the forward pass in ``--workers`` threads at once (as the
pipeline runs partitions): on a CPU two streams of small convolutions use the cores
better than one stream's intra-op threads. Each figure is the best of ``--repeats``.
Run: ``python benchmarks/bench_images.py [--images 4000] [--workers 2]``.
"""

from __future__ import annotations

import argparse
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
from pipeline.images.dataset import Preprocess, prepare_images
from pipeline.images.model import (
    ImageModel,
    build_network,
    predict_proba,
    resolve_device,
    save_model_dir,
)


def make_images(folder: Path, n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    kinds = sorted(HIERARCHY)
    rows = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        image, _ = draw_object(kind, float(rng.uniform(1.0, 6.0)), 0.092, rng)
        path = folder / f"{i:06d}.png"
        Image.fromarray(image).save(path)
        rows.append({"object_id": f"o{i:06d}", "image": str(path), "pixel_size_um": 92.0})
    return pd.DataFrame(rows)


def _forward_seconds(model, prepared, batch_size, device, *, streams: int) -> float:
    """Forward pass over all images, in ``streams`` concurrent threads (one part each)."""
    parts = np.array_split(np.arange(len(prepared.pixels)), streams)

    def run(idx):
        predict_proba(
            model, prepared.pixels[idx], prepared.extras[idx], batch_size=batch_size, device=device
        )

    start = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(run, parts))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--partition-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "images.json"))
    args = parser.parse_args()
    device = resolve_device(args.device)
    tmp = Path(tempfile.mkdtemp(prefix="bench-images-"))
    try:
        t0 = time.perf_counter()
        (tmp / "png").mkdir()
        table = make_images(tmp / "png", args.images)
        t_make = time.perf_counter() - t0
        torch.manual_seed(0)
        kinds = sorted(HIERARCHY)
        pre = Preprocess(size=args.size, canvas_px=96)
        network = build_network("compact", len(kinds), params={"width": args.width}).eval()
        model = ImageModel(
            network=network, classes=kinds, preprocess=pre, params={"width": args.width}
        )
        model_dir = str(tmp / "model")
        save_model_dir(model, model_dir)
        network.to(device)

        prepared = prepare_images(table["image"].tolist(), pre, threads=8)
        predict_proba(
            model,
            prepared.pixels[: args.batch_size],
            prepared.extras[: args.batch_size],
            batch_size=args.batch_size,
            device=device,
        )  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t_forward = min(
            _forward_seconds(model, prepared, args.batch_size, device, streams=1)
            for _ in range(args.repeats)
        )
        t_forward2 = min(
            _forward_seconds(model, prepared, args.batch_size, device, streams=args.workers)
            for _ in range(args.repeats)
        )
        t0 = time.perf_counter()
        prepare_images(table["image"].tolist(), pre, threads=8)
        t_prepare = time.perf_counter() - t0

        config = ClassifyConfig(
            partition_size=args.partition_size, batch_size=args.batch_size, device=args.device
        )
        process = min(
            (
                classify_images(table, model_dir, str(tmp / f"out-process-{r}"), config=config)
                for r in range(args.repeats)
            ),
            key=lambda res: res.seconds,
        )
        with (
            distributed.LocalCluster(
                n_workers=args.workers, threads_per_worker=1, dashboard_address=None
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            cluster_res = min(
                (
                    classify_images(
                        table,
                        model_dir,
                        str(tmp / f"out-cluster-{r}"),
                        config=config,
                        client=client,
                    )
                    for r in range(args.repeats)
                ),
                key=lambda res: res.seconds,
            )
        n = len(table)
        results = {
            "forward_images_per_s": n / t_forward,
            "forward_concurrent_images_per_s": n / t_forward2,
            "prepare_only_images_per_s": n / t_prepare,
            "end_to_end_process_images_per_s": process.images_per_second,
            "end_to_end_cluster_images_per_s": cluster_res.images_per_second,
            "ratio_process_over_forward": process.images_per_second / (n / t_forward),
            "ratio_cluster_over_forward": cluster_res.images_per_second / (n / t_forward),
            "ratio_process_over_forward_concurrent": process.images_per_second / (n / t_forward2),
            "ratio_cluster_over_forward_concurrent": cluster_res.images_per_second
            / (n / t_forward2),
            "seconds": {
                "make_images": t_make,
                "forward": t_forward,
                "forward_concurrent": t_forward2,
                "prepare": t_prepare,
                "process": process.seconds,
                "cluster": cluster_res.seconds,
            },
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report = {
        "name": "images: classify end to end vs forward alone (same model, device, batch)",
        "params": {
            "images": args.images,
            "batch_size": args.batch_size,
            "workers": args.workers,
            "repeats": args.repeats,
            "partition_size": args.partition_size,
            "device": str(device),
            "model": {
                "arch": "compact",
                "width": args.width,
                "input": args.size,
                "parameters": sum(p.numel() for p in network.parameters()),
            },
        },
        "results": results,
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
        },
    }
    print(json.dumps(results, indent=2))
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
