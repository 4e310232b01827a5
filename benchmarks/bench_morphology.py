"""Benchmark: morphological types (PCA + k-means) on millions of synthetic objects, streamed.

A lazy objects table (default 2 000 000 rows x 30 features, partitions of 100 000 rows)
is drawn by partition from a known mixture of types: each type has its own mean in a
5-dimensional latent space, the features are a fixed random mixing of the latent
values plus noise, 24 of them exponentiated (positive and skewed, as areas and grey
levels are) and 6 left signed (as skewness and kurtosis); 0.1 % of the rows miss a value.
Nothing is ever held whole: :func:`pipeline.images.morphology.fit_types` streams it
(dask threaded scheduler), then :func:`assign_types` types every row and the contingency
table with the generating types is summed by partition.

Measured, each run in its own process: wall time of the fit and of the assignment, the
peak RSS (``VmHWM``) against the size of the objects x features matrix, for the full
table and a tenth of it (the streamed peak should not grow with the rows), and the
adjusted Rand index with the generating types. Baseline, same run: scikit-learn PCA +
KMeans (3 inits) on the same table materialised in memory (wall, peak RSS, ARI).

Writes ``benchmarks/results/morphology.json``. Run: ``python benchmarks/bench_morphology.py``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import time
from pathlib import Path

import dask
import dask.dataframe as dd
import dask_ml
import numpy as np
import pandas as pd
import sklearn
from scipy.special import comb

from pipeline.images.morphology import MorphologyConfig, assign_types, fit_types

N_LATENT = 5
N_SIGNED = 6


def _peak_rss_mb() -> float:
    """Peak RSS of this process (VmHWM: unlike ru_maxrss, not inherited over fork+exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def _mixture(n_types: int, n_features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(n_types, N_LATENT))
    mixing = rng.normal(scale=0.5, size=(N_LATENT, n_features))
    return centres, mixing


def make_block(i: int, *, rows: int, n_types: int, n_features: int, seed: int) -> pd.DataFrame:
    """One partition of the synthetic objects table (deterministic from seed and i)."""
    centres, mixing = _mixture(n_types, n_features, seed)
    rng = np.random.default_rng([seed, i])
    kind = rng.integers(0, n_types, rows)
    latent = centres[kind] + rng.normal(scale=0.6, size=(rows, N_LATENT))
    x = latent @ mixing + rng.normal(scale=0.3, size=(rows, n_features))
    x[:, N_SIGNED:] = np.exp(x[:, N_SIGNED:] + 3.0)  # positive, right-skewed
    x[rng.random(rows) < 0.001, rng.integers(0, n_features)] = np.nan
    frame = pd.DataFrame(x, columns=[f"f{j:02d}" for j in range(n_features)])
    frame.insert(0, "object_id", [f"obj_{i:05d}_{r:06d}" for r in range(rows)])
    frame.insert(1, "status", "V")
    frame.insert(2, "hierarchy", "not-living>detritus>synthetic")
    frame["true_type"] = kind
    return frame


def _contingency(
    part: pd.DataFrame, truth: pd.DataFrame, n_types: int, labels: list[str]
) -> pd.DataFrame:
    typed = part["label"].notna().to_numpy()
    code = pd.Categorical(part["label"][typed], categories=labels).codes
    table = np.zeros((n_types, len(labels)), dtype="int64")
    np.add.at(table, (truth["true_type"].to_numpy()[typed], code), 1)
    return pd.DataFrame(table.reshape(1, -1))


def ari_from_contingency(table: np.ndarray) -> float:
    """Adjusted Rand index from a contingency table (rows: truth, columns: clusters)."""
    n = table.sum()
    index = comb(table, 2).sum()
    a, b = comb(table.sum(axis=1), 2).sum(), comb(table.sum(axis=0), 2).sum()
    expected = a * b / comb(n, 2)
    return float((index - expected) / (0.5 * (a + b) - expected))


def _streamed(job: dict, queue: multiprocessing.Queue) -> None:
    """fit_types + assign_types on the lazy table, in its own process (own peak RSS)."""
    block, partitions = job["block"], job["partitions"]
    meta = make_block(0, **{**block, "rows": 0})
    objects = dd.from_map(make_block, range(partitions), **block, meta=meta)
    features = tuple(c for c in meta.columns if c.startswith("f"))
    rss_start = _peak_rss_mb()
    start = time.perf_counter()
    model = fit_types(objects, config=MorphologyConfig(features=features, n_types=job["n_types"]))
    fit_s = time.perf_counter() - start
    rss_fit = _peak_rss_mb()

    start = time.perf_counter()
    labels = assign_types(objects[["object_id", *features, "status", "hierarchy"]], model)
    k = job["n_types"]
    tables = dd.map_partitions(  # labels keep the objects' partitions and rows (all selected)
        _contingency,
        labels,
        objects[["true_type"]],
        k,
        list(model.labels),
        align_dataframes=False,
        meta=pd.DataFrame({j: pd.Series([], dtype="int64") for j in range(k * k)}),
    )
    table = tables.sum().compute().to_numpy().reshape(k, k)
    assign_s = time.perf_counter() - start
    rows = partitions * block["rows"]
    queue.put(
        {
            "rows": rows,
            "fit_seconds": fit_s,
            "assign_seconds": assign_s,
            "assign_rows_per_second": rows / assign_s,
            "peak_rss_mb_before_fit": rss_start,
            "peak_rss_mb_after_fit": rss_fit,
            "peak_rss_mb_after_assign": _peak_rss_mb(),
            "objects_x_features_matrix_mb": rows * len(features) * 8 / 2**20,
            "ari_vs_generating_types": ari_from_contingency(table),
            "n_fit": model.n_fit,
            "n_missing": model.n_missing,
            "n_components": int(model.components.shape[0]),
            "explained_variance": float(model.explained_variance_ratio.sum()),
            "type_counts": dict(zip(model.labels, model.counts, strict=True)),
            "contingency": table.tolist(),
        }
    )


def _baseline(job: dict, queue: multiprocessing.Queue) -> None:
    """scikit-learn on the materialised table, in its own process (own peak RSS)."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score

    start = time.perf_counter()
    frame = pd.concat(
        [make_block(i, **job["block"]) for i in range(job["partitions"])], ignore_index=True
    ).dropna()
    x = frame[[c for c in frame.columns if c.startswith("f")]].to_numpy(copy=True)
    x[:, N_SIGNED:] = np.log1p(x[:, N_SIGNED:])
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    pca = PCA(n_components=job["n_components"], random_state=0).fit(x)
    labels = KMeans(job["n_types"], n_init=3, random_state=0).fit_predict(pca.transform(x))
    queue.put(
        {
            "rows": len(frame),
            "seconds": time.perf_counter() - start,
            "peak_rss_mb": _peak_rss_mb(),
            "ari_vs_generating_types": float(adjusted_rand_score(frame["true_type"], labels)),
        }
    )


def _in_process(target, job: dict) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(job, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f"{target.__name__} failed (exit code {proc.exitcode})")
    result = queue.get()
    print(target.__name__, json.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--types", type=int, default=5)
    parser.add_argument("--partition-rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "morphology.json"))
    args = parser.parse_args()

    block = {
        "rows": args.partition_rows,
        "n_types": args.types,
        "n_features": args.features,
        "seed": args.seed,
    }
    partitions = -(-args.rows // args.partition_rows)
    job = {"block": block, "partitions": partitions, "n_types": args.types}
    # a tenth of the rows first: the peak memory of a streamed fit should not grow with them
    small = _in_process(_streamed, {**job, "partitions": max(1, partitions // 10)})
    full = _in_process(_streamed, job)
    baseline = None
    if not args.no_baseline:
        baseline = _in_process(_baseline, {**job, "n_components": full["n_components"]})

    report = {
        "name": "morphology: fit_types + assign_types streamed vs sklearn in memory",
        "params": {
            "rows": full["rows"],
            "features": args.features,
            "generating_types": args.types,
            "partition_rows": args.partition_rows,
            "partitions": partitions,
            "seed": args.seed,
            "scheduler": "dask threaded, this process",
            "config": "MorphologyConfig(features=<the 30>, n_types=<types>), other defaults",
            "figure": "one run each, own process, wall seconds; peak RSS = VmHWM",
        },
        "results": full,
        "results_tenth_of_the_rows": small,
        "baseline_sklearn_in_memory": baseline,
        "versions": {
            "dask": dask.__version__,
            "dask_ml": dask_ml.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "sklearn": sklearn.__version__,
            "python": platform.python_version(),
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average_1_5_15_at_end": list(os.getloadavg()),
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
