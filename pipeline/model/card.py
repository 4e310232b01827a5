"""Model card, save/load and hashing of a trained model (the model as a file).

:func:`model_card` describes a trained booster: features, targets, the targets'
transform, the training options and the xgboost parameters they give, the CV scores
and the provenance (:func:`hash_frame` of the training table, :func:`hash_config` of
the run's config, software versions). :func:`save_model` writes the booster in
xgboost's own UBJSON format (``model.ubj``) beside the card (``card.json``) under one
folder, local or fsspec URL; :func:`load_model` reads both back and checks that they
match.

Developer note
--------------
This module builds on :mod:`pipeline.model.train` (:class:`~pipeline.model.train.TrainConfig` and
the xgboost parameters it gives). Records keep the ``pipeline.model.train`` logger of the
training step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import platform
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xgboost

from pipeline import __version__
from pipeline.errors import InputFormatError
from pipeline.io import read_bytes
from pipeline.model.train import TrainConfig, _params
from pipeline.store import OutputStore, as_store

__all__ = ["hash_config", "hash_frame", "load_model", "model_card", "save_model"]

logger = logging.getLogger(__name__)

_MODEL_FILE = "model.ubj"
_CARD_FILE = "card.json"


def _jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars/arrays to Python, NaN/inf to None, tuples to lists."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def hash_frame(df: pd.DataFrame) -> str:
    """Stable content hash of a table (values, index, column names and dtypes).

    Parameters
    ----------
    df : pandas.DataFrame
        The table (e.g. the matchup the model was trained on).

    Returns
    -------
    str
        ``sha256:`` and 64 hex digits; equal for equal tables across processes.

    Examples
    --------
    >>> a = pd.DataFrame({"x": [1.0, 2.0]})
    >>> hash_frame(a) == hash_frame(a.copy()), hash_frame(a) == hash_frame(a * 2)
    (True, False)
    """
    digest = hashlib.sha256()
    digest.update(json.dumps([[str(c), str(t)] for c, t in df.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(df, index=True).to_numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def hash_config(config: Any) -> str:
    """Stable hash of a config dataclass (its fields as sorted JSON).

    Examples
    --------
    >>> hash_config(TrainConfig()) == hash_config(TrainConfig(seed=0))
    True
    """
    payload = json.dumps(_jsonable(dataclasses.asdict(config)), sort_keys=True)
    return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()


def model_card(
    *,
    booster: xgboost.Booster,
    features: Sequence[str],
    targets: Sequence[str],
    transform: Mapping[str, Any],
    config: TrainConfig,
    scores: Mapping[str, Any],
    data_hash: str,
    config_hash: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Describe a trained model: inputs, outputs, transform, parameters, skill, provenance.

    Parameters
    ----------
    booster : xgboost.Booster
        The final model.
    features, targets : sequence of str
        Predictor and target names, in the model's column order.
    transform : mapping
        The targets' training transform (``TargetsResult.transform``).
    config : TrainConfig
        The training options.
    scores : mapping
        ``CVResult.scores`` (:class:`pipeline.model.crossval.CVResult`).
    data_hash, config_hash : str
        :func:`hash_frame` of the training table, hash of the run's config.
    extra : mapping, optional
        Anything else to record (e.g. the catalog URL, the split).

    Returns
    -------
    dict
        JSON-serialisable card (NaN written as null).

    Raises
    ------
    ValueError
        When ``features`` differ from the booster's feature names.
    """
    if booster.feature_names is not None and list(booster.feature_names) != list(features):
        raise ValueError(
            f"features {list(features)!r} differ from the booster's "
            f"{list(booster.feature_names)!r}; pass X.columns of the training table."
        )
    device = booster.attr("device") or "cpu"
    card = {
        "format": "oceanfields-model-card/1",
        "model_file": _MODEL_FILE,
        "features": list(features),
        "targets": list(targets),
        "transform": dict(transform),
        "config": dataclasses.asdict(config),
        "params": _params(config, device=device, n_targets=len(targets)),
        "best_iteration": int(booster.attr("best_iteration") or booster.num_boosted_rounds() - 1),
        "num_boosted_rounds": booster.num_boosted_rounds(),
        "scores": dict(scores),
        "data_hash": data_hash,
        "config_hash": config_hash,
        "software": {
            "oceanfields": __version__,
            "xgboost": xgboost.__version__,
            "python": platform.python_version(),
        },
        "extra": dict(extra or {}),
    }
    return _jsonable(card)


def _join(url: str, name: str) -> str:
    return url.rstrip("/") + "/" + name


def save_model(
    booster: xgboost.Booster,
    card: Mapping[str, Any],
    url: str | OutputStore,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Write ``url/model.ubj`` (xgboost's UBJSON format) and ``url/card.json``.

    Each file is written whole (:class:`~pipeline.store.OutputStore`), the card last, so a
    folder with a card holds a complete model.

    Parameters
    ----------
    booster : xgboost.Booster
        The model.
    card : mapping
        Its :func:`model_card`.
    url : str or OutputStore
        Folder (local path or fsspec URL such as ``s3://bucket/run/model``) or its store.
    storage_options : mapping, optional
        Passed to fsspec when ``url`` is a URL.

    See Also
    --------
    load_model : the reverse.
    """
    store = as_store(url, storage_options=storage_options)
    store.write_bytes(_MODEL_FILE, bytes(booster.save_raw("ubj")))
    store.write_json(_CARD_FILE, _jsonable(card), indent=2, sort_keys=True, newline=False)
    logger.info("model: wrote %s (%s and %s)", store.url, _MODEL_FILE, _CARD_FILE)


def load_model(
    url: str, *, storage_options: Mapping[str, Any] | None = None
) -> tuple[xgboost.Booster, dict[str, Any]]:
    """Read a model written by :func:`save_model`.

    Parameters
    ----------
    url : str
        The folder given to :func:`save_model`.
    storage_options : mapping, optional
        Passed to fsspec.

    Returns
    -------
    (xgboost.Booster, dict)
        The booster (best iteration and features kept) and its card.

    Raises
    ------
    InputFormatError
        When a file is missing or unreadable, or the card does not match the model.
    """
    raw = read_bytes(_join(url, _MODEL_FILE), storage_options=storage_options)
    card_bytes = read_bytes(_join(url, _CARD_FILE), storage_options=storage_options)
    booster = xgboost.Booster()
    try:
        booster.load_model(bytearray(raw))
        card = json.loads(card_bytes.decode("utf-8"))
    except (xgboost.core.XGBoostError, ValueError) as err:
        raise InputFormatError(f"{url}: not a model written by save_model ({err}).") from err
    if booster.feature_names is not None and card.get("features") != booster.feature_names:
        raise InputFormatError(
            f"{_join(url, _CARD_FILE)}: features {card.get('features')!r} differ from the "
            f"model's {booster.feature_names!r}; rewrite both with save_model."
        )
    return booster, card
