"""Benchmark: default ``images train`` against the handcrafted + GBT baseline (issue 16).

Real uvpec UVP6 vignettes (1,250, 10 classes), one stratified 80/20 split
(:func:`pipeline.images.evaluation.stratified_holdout`, seed 0) shared by every recipe;
the test 20 % is scored once and never used to choose anything.

- ``baseline_gbt``: handcrafted features + xgboost (:func:`pipeline.images.gbt.fit_gbt`),
  the UVP6 embedded classifier's approach;
- ``head_on_handcrafted``: the logistic head (:mod:`pipeline.images.heads`) on the same
  features (no CNN: seconds);
- ``default``: :func:`pipeline.images.training.train_classifier` with **default
  settings** (chosen from the data, :mod:`pipeline.images.recipe`; the head is
  ``ImageTrainConfig.head``'s default: ``"logistic"`` when ``recipes.json`` was written,
  ``"handcrafted_mean"`` since, see its note), scored as ``images classify`` scores;
- ``default_cnn_only``: the same trained network's own softmax (8-view TTA), for
  comparison, no extra training;
- ``mean_of_cnn_and_handcrafted_head``: the mean of that softmax and the handcrafted
  head's probabilities (a candidate, no extra training).

Reported: balanced accuracy first, accuracy, macro F1, per-class precision/recall,
calibration error, abstention on the test set, training seconds, and the machine's load
average (2 cores shared with other jobs: wall times are upper bounds; the default's CPU
seconds over 2 threads estimate its wall time on 2 free cores). Writes
``benchmarks/results/recipes.json``. Run: ``python benchmarks/bench_recipes.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from bench_uvp6 import data_doc, split  # same folder: the shared split

from pipeline.images.dataset import prepare_images
from pipeline.images.gbt import GBTConfig, fit_gbt
from pipeline.images.handcrafted import FEATURE_NAMES, features_from_urls
from pipeline.images.heads import fit_head
from pipeline.images.model import predict_proba
from pipeline.images.training import score_probs, train_classifier
from pipeline.images.training_config import ImageTrainConfig

ROOT = Path(__file__).resolve().parents[1]


def _short(m):
    keep = ("balanced_accuracy", "accuracy", "macro_f1", "calibration_error", "n")
    out = {k: m[k] for k in keep if k in m}
    out["per_class"] = {
        c: {k: round(v[k], 3) for k in ("precision", "recall")} for c, v in m["per_class"].items()
    }
    if "abstention" in m:
        out["abstention"] = {
            k: m["abstention"][k] for k in ("share_unassigned", "precision_assigned")
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "recipes.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    table, cats, train_idx, test_idx, classes, truth = split()
    codes = np.array([classes.index(c) for c in truth])
    doc: dict = {
        "benchmark": "recipes",
        "data": {
            **data_doc(table, classes, train_idx, test_idx),
            "note": "100 Copepoda vignettes are byte copies of the 100 darksphere ones",
        },
    }

    t0 = time.perf_counter()
    feats = features_from_urls(table["image"].tolist())
    X = feats[list(FEATURE_NAMES)]
    t_feat = time.perf_counter() - t0
    t0 = time.perf_counter()
    gbt = fit_gbt(X.iloc[train_idx], [cats[i] for i in train_idx], config=GBTConfig(n_jobs=1))
    t_gbt = time.perf_counter() - t0
    _, gbt_p = gbt.predict(X.iloc[test_idx])
    doc["baseline_gbt"] = {
        "seconds_train": t_feat + t_gbt,
        **_short(score_probs(gbt_p, codes, classes)),
    }

    H = X.add_prefix("h_")
    t0 = time.perf_counter()
    head = fit_head(H.iloc[train_idx], [cats[i] for i in train_idx])
    t_head = time.perf_counter() - t0
    doc["head_on_handcrafted"] = {
        "seconds_train": t_feat + t_head,
        "c": head.c,
        **_short(
            score_probs(head.predict_proba(H.iloc[test_idx]), codes, classes, head.abstention)
        ),
    }

    config = ImageTrainConfig(threads=args.threads)
    t0, c0 = time.perf_counter(), time.process_time()
    res = train_classifier(table.iloc[train_idx], config=config, test=table.iloc[test_idx])
    t_train, c_train = time.perf_counter() - t0, time.process_time() - c0
    model = res.model
    doc["default"] = {
        "seconds_train": t_train,
        "cpu_seconds_train": c_train,
        "config": model.meta["trained"]["config"],
        "epochs_run": len(res.history),
        "best_epoch": model.meta["trained"]["best_epoch"],
        "head_c": model.head.c if model.head is not None else None,
        **_short(res.metrics["test"]),
    }
    prepared = prepare_images(table["image"].iloc[test_idx].tolist(), model.preprocess)
    cnn_p = predict_proba(model, prepared.pixels, prepared.extras, tta=True).numpy()
    doc["default_cnn_only"] = _short(score_probs(cnn_p, codes, classes))
    hand_p = head.predict_proba(H.iloc[test_idx])
    doc["mean_of_cnn_and_handcrafted_head"] = _short(
        score_probs((cnn_p + hand_p) / 2, codes, classes)
    )
    doc["machine"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "note": "2 cores shared with other agents' jobs: timings are upper bounds",
    }
    names = ("baseline_gbt", "head_on_handcrafted", "default", "default_cnn_only")
    for name in (*names, "mean_of_cnn_and_handcrafted_head"):
        m = doc[name]
        print(
            f"{name}: balanced accuracy {m['balanced_accuracy']:.3f}, accuracy "
            f"{m['accuracy']:.3f}, calibration error {m['calibration_error']:.3f}"
            + (f", {m['seconds_train']:.0f} s" if "seconds_train" in m else "")
        )
    Path(args.out).write_text(json.dumps(doc, indent=2, default=float))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
