"""Benchmark: the CNN against the handcrafted-features GBT on the real labelled UVP6 vignettes.

``../shared/data/uvpec_uvp6_labelled_images`` (1 250 vignettes, 10 classes): one stratified
80/20 split (:func:`pipeline.images.evaluation.stratified_holdout`, seed 0) shared by both
models; the test 20 % is scored once at the end and never used to stop or tune.

- ``gbt``: xgboost on the handcrafted shape/grey-level features (the approach of the UVP6
  embedded classifier), :func:`pipeline.images.gbt.fit_gbt`;
- ``cnn``: :func:`pipeline.images.training.train_classifier` (compact CNN; its own
  validation split is taken from the training 80 %).

The sample ships its 100 ``darksphere`` vignettes a second time under ``Copepoda`` (same
bytes), so no model can separate those two classes; the scores are also given on the 8
other classes. Writes ``benchmarks/results/uvp6.json``. Run:
``python benchmarks/bench_uvp6.py [--epochs 80]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.images.dataset import image_table
from pipeline.images.evaluation import classification_metrics, stratified_holdout
from pipeline.images.gbt import GBTConfig, fit_gbt
from pipeline.images.handcrafted import features_from_urls
from pipeline.images.training import train_classifier
from pipeline.images.training_config import ImageTrainConfig

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "uvpec_uvp6_labelled_images" / "img_sample"
TWINS = ("Copepoda__6666", "darksphere__7777")


def split():
    """The sample and its stratified 80/20 split (seed 0), shared by the UVP6 benchmarks."""
    table = image_table(str(DATA))
    cats = table["category"].tolist()
    train_idx, test_idx = stratified_holdout(cats, test_fraction=0.2, seed=0)
    classes = sorted(set(cats))
    return table, cats, train_idx, test_idx, classes, [cats[i] for i in test_idx]


def data_doc(table, classes, train_idx, test_idx):
    """What the benchmark JSON says of the data and the split."""
    return {
        "images": len(table),
        "classes": len(classes),
        "train": len(train_idx),
        "test": len(test_idx),
        "split": "stratified_holdout(test_fraction=0.2, seed=0)",
    }


def _scores(truth, pred, classes):
    full = classification_metrics(truth, pred, classes)
    keep = [i for i, t in enumerate(truth) if t not in TWINS]
    others = [c for c in classes if c not in TWINS]
    sub_pred = [pred[i] if pred[i] in others else "__other__" for i in keep]
    eight = classification_metrics([truth[i] for i in keep], sub_pred, [*others, "__other__"])
    return {
        "all_10_classes": full,
        "without_the_twin_classes": {
            k: eight[k] for k in ("n", "accuracy", "balanced_accuracy", "macro_f1")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--canvas", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "uvp6.json"))
    args = parser.parse_args()

    table, cats, train_idx, test_idx, classes, truth = split()

    t0 = time.perf_counter()
    feats = features_from_urls(table["image"].tolist())
    X = feats.drop(columns=["image", "reason"])
    t_feat = time.perf_counter() - t0
    t0 = time.perf_counter()
    gbt = fit_gbt(X.iloc[train_idx], [cats[i] for i in train_idx], config=GBTConfig(n_jobs=1))
    t_gbt = time.perf_counter() - t0
    gbt_pred, _ = gbt.predict(X.iloc[test_idx])
    gbt_scores = _scores(truth, list(gbt_pred), classes)

    config = ImageTrainConfig(
        epochs=args.epochs,
        patience=args.epochs,
        width=args.width,
        size=args.size,
        canvas_px=args.canvas,
        threads=args.threads,
        tta=True,
    )
    t0 = time.perf_counter()
    res = train_classifier(table.iloc[train_idx], config=config, test=table.iloc[test_idx])
    t_cnn = time.perf_counter() - t0
    from pipeline.images.dataset import prepare_images
    from pipeline.images.model import predict_proba

    prepared = prepare_images(table["image"].iloc[test_idx].tolist(), res.model.preprocess)
    probs = predict_proba(res.model, prepared.pixels, prepared.extras, tta=True)
    cnn_pred = [res.model.classes[i] for i in probs.argmax(dim=1).tolist()]
    cnn_scores = _scores(truth, cnn_pred, classes)

    doc = {
        "benchmark": "uvp6",
        "data": {
            **data_doc(table, classes, train_idx, test_idx),
            "twin_classes": list(TWINS),
        },
        "gbt": {
            "seconds_features": t_feat,
            "seconds_fit": t_gbt,
            "rounds": gbt.n_rounds,
            **gbt_scores,
        },
        "cnn": {
            "seconds_train": t_cnn,
            "epochs_run": len(res.history),
            "best_epoch": max(res.history, key=lambda h: h["val_balanced_accuracy"])["epoch"],
            "config": dataclasses.asdict(config),
            "parameters": sum(p.numel() for p in res.model.network.parameters()),
            **cnn_scores,
        },
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor(),
        },
    }
    for name in ("gbt", "cnn"):
        a, b = doc[name]["all_10_classes"], doc[name]["without_the_twin_classes"]
        print(
            f"{name}: test accuracy {a['accuracy']:.3f}, balanced {a['balanced_accuracy']:.3f}"
            f"; without the twin classes {b['accuracy']:.3f} / {b['balanced_accuracy']:.3f}"
        )
    Path(args.out).write_text(json.dumps(doc, indent=2, default=float))
    print(f"written {args.out}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
