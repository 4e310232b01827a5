"""Benchmark: xgboost.dask on a LocalCluster vs single-process xgboost.train, same work.

Same synthetic data as tests/test_train.py, scaled up (default 50 000 rows, 15
features, 5 targets), the same parameters and a fixed number of rounds (no early
stopping) on both sides, for each multi-output strategy:

- ``dask``: :func:`pipeline.model.train.fit_model` on a ``LocalCluster(2 workers x 1 thread)``
  (includes scattering the partitions and building the DaskQuantileDMatrix);
- ``local``: ``xgboost.train`` with ``nthread=2`` in this process (includes building the
  QuantileDMatrix).

Writes ``benchmarks/results/train.json``. Run: ``python benchmarks/bench_train.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import dask
import distributed
import numpy as np
import pandas as pd
import sklearn
import xgboost

from pipeline.model.train import TrainConfig, _params, fit_model, predict


def make_data(n: int, n_features: int, n_targets: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n, n_features))
    mix = rng.normal(size=(3, n_targets))
    base = np.column_stack([np.sin(2 * x[:, 0]), x[:, 1] ** 2, x[:, 0] * x[:, 2 % n_features]])
    signal = base @ mix
    noise = rng.normal(scale=0.25, size=(n, n_targets))
    X = pd.DataFrame(x, columns=[f"x{i}" for i in range(n_features)])
    Y = pd.DataFrame(signal + noise, columns=[f"y{j}" for j in range(n_targets)])
    return X, Y


def time_local(X, Y, params, rounds, nthread):
    start = time.perf_counter()
    dtrain = xgboost.QuantileDMatrix(X, Y, nthread=nthread)
    booster = xgboost.train({**params, "nthread": nthread}, dtrain, num_boost_round=rounds)
    return time.perf_counter() - start, booster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--features", type=int, default=15)
    parser.add_argument("--targets", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "train.json"))
    args = parser.parse_args()

    X, Y = make_data(args.rows, args.features, args.targets)
    train = np.arange(args.rows)
    results = []
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        # warm-up: imports and the collective on the workers
        fit_model(
            client,
            X.iloc[:500],
            Y.iloc[:500],
            train=np.arange(500),
            config=TrainConfig(n_estimators=2, device="cpu"),
        )
        for strategy in ("multi_output_tree", "one_output_per_tree"):
            config = TrainConfig(n_estimators=args.rounds, device="cpu", multi_strategy=strategy)
            params = _params(config, device="cpu", n_targets=args.targets)
            dask_s, local_s = [], []
            for _ in range(args.repeats):
                start = time.perf_counter()
                booster = fit_model(client, X, Y, train=train, config=config)
                dask_s.append(time.perf_counter() - start)
                seconds, local = time_local(X, Y, params, args.rounds, nthread=2)
                local_s.append(seconds)
            mse_dask = float(((predict(booster, X) - Y.to_numpy()) ** 2).mean())
            mse_local = float(((predict(local, X) - Y.to_numpy()) ** 2).mean())
            row = {
                "multi_strategy": strategy,
                "seconds_dask": min(dask_s),
                "seconds_local": min(local_s),
                "seconds_dask_all": dask_s,
                "seconds_local_all": local_s,
                "ratio_dask_over_local": min(dask_s) / min(local_s),
                "train_mse_dask": mse_dask,
                "train_mse_local": mse_local,
            }
            print(json.dumps(row))
            results.append(row)

    report = {
        "name": "train: xgboost.dask LocalCluster(2x1) vs xgboost.train(nthread=2)",
        "params": {
            "rows": args.rows,
            "features": args.features,
            "targets": args.targets,
            "rounds": args.rounds,
            "repeats": args.repeats,
            "config": dataclasses.asdict(TrainConfig(n_estimators=args.rounds, device="cpu")),
            "figure": "min over repeats, wall seconds, data preparation included",
        },
        "results": results,
        "versions": {
            "xgboost": xgboost.__version__,
            "dask": dask.__version__,
            "distributed": distributed.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "sklearn": sklearn.__version__,
            "python": platform.python_version(),
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
