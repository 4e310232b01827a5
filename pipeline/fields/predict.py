"""Fields: predict every ocean cell, month and layer with a trained model.

:func:`predict_fields` turns a lazy features Dataset (dims ``(time, layer, lat, lon)``,
one float32 variable per feature, ``attrs["features"]`` the ordered feature names) and
an :class:`xgboost.Booster` into a lazy fields Dataset: one back-transformed variable per
target, optionally a prediction interval (``<t>_lower``, ``<t>_upper``) from residual
quantiles, and an extrapolation flag against the training envelope
(:func:`envelope_of`). :func:`~pipeline.fields.write.write_fields` (importable from here
too, with :class:`~pipeline.fields.write.WriteReport` and
:class:`~pipeline.errors.StoreMismatchError`) writes it to a zarr v3 store, local or
``s3://…``, one time step (region) at a time, resumably.

Developer note
--------------
*Shipping the model.* The booster's raw bytes (``save_raw("ubj")``) enter the graph
once, as a single key every block task depends on (a :func:`dask.delayed` literal). A
distributed worker fetches that key once per computation and keeps the deserialised
:class:`xgboost.Booster` in the module-level ``_BOOSTERS`` cache keyed by the SHA-256
of the bytes, so each worker process deserialises the model once. Never capture the
booster (or its bytes) in the block function: it would be pickled into every task.

*Threads.* ``inplace_predict`` runs with ``nthread=1``: the default cluster has one
single-threaded worker process per core (``pipeline.clusters.config``), so parallelism comes
from blocks, and xgboost's own threads would only oversubscribe the cores.

*Missing values.* A cell where any feature is NaN (land, or a layer below the sea floor)
is not predicted: its fields are NaN and its extrapolation flag and count are ``-1``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import xgboost as xgb

from pipeline.config import check_choice, check_count, check_range
from pipeline.model.intervals import DISTANCE_BINS_KM, distance_class, nearest_km
from pipeline.model.train import count_prediction
from pipeline.predictors.features import optional_features
from pipeline.targets.particles import inverse_transform

__all__ = [
    "FieldsConfig",
    "envelope_of",
    "predict_fields",
]

logger = logging.getLogger(__name__)

DIMS = ("time", "layer", "lat", "lon")
_LAYER_COORDS = ("layer_top_m", "layer_bottom_m")

#: Per worker process: SHA-256 of the model bytes -> deserialised Booster.
_BOOSTERS: dict[str, xgb.Booster] = {}
_BOOSTERS_LOCK = threading.Lock()


@dataclass(frozen=True, kw_only=True)
class FieldsConfig:
    """Options of :func:`predict_fields` and :func:`write_fields` (defaults live here only).

    Attributes
    ----------
    lat_chunk : int or None
        Rechunk the features along ``lat`` to this many rows per block before
        predicting (``None``: keep the input chunks). Also the zarr chunk along lat.
    interval_coverage : float
        Nominal coverage of the prediction interval built from the residual quantiles,
        recorded in the interval variables' attributes (0 < coverage < 1).
    write_region : {"time"}
        Dimension of the write regions: one region per time step.
    write_batch_mb : float
        Regions computed together, as many consecutive time steps as hold this many
        MB of output (at least one; ``0``: one at a time). Resuming stays per region.

    Examples
    --------
    >>> FieldsConfig(lat_chunk=180).lat_chunk
    180
    >>> FieldsConfig(lat_chunk=0)
    Traceback (most recent call last):
    ...
    pipeline.errors.ConfigError: fields.lat_chunk: 0; expected an integer >= 1 (or None).
    """

    lat_chunk: int | None = None
    interval_coverage: float = 0.9
    write_region: Literal["time"] = "time"
    write_batch_mb: float = 64.0

    def __post_init__(self) -> None:
        """Check the options; raise ConfigError naming the key and the value."""
        check_count("fields.lat_chunk", self.lat_chunk, 1, allow_none=True)
        check_range(
            "fields.interval_coverage",
            self.interval_coverage,
            low=0,
            high=1,
            low_open=True,
            high_open=True,
            fix="e.g. 0.9",
        )
        check_choice("fields.write_region", self.write_region, ("time",))
        check_range("fields.write_batch_mb", self.write_batch_mb, low=0, fix="e.g. 64")


def envelope_of(X: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Return the training envelope: ``(min, max)`` of each feature, NaN ignored.

    Parameters
    ----------
    X : pandas.DataFrame
        The training features, one column per feature.

    Returns
    -------
    dict of str to (float, float)
        ``{feature: (min, max)}`` in column order.

    See Also
    --------
    predict_fields : flags cells outside this envelope.

    Examples
    --------
    >>> envelope_of(pd.DataFrame({"t": [1.0, 3.0, np.nan], "s": [35.0, 34.0, 36.5]}))
    {'t': (1.0, 3.0), 's': (34.0, 36.5)}
    """
    return {str(c): (float(X[c].min()), float(X[c].max())) for c in X.columns}


# ---------------------------------------------------------------------------------------
# prediction


def _booster_from(raw: bytes, digest: str) -> xgb.Booster:
    booster = _BOOSTERS.get(digest)
    if booster is None:
        with _BOOSTERS_LOCK:
            booster = _BOOSTERS.get(digest)
            if booster is None:
                booster = xgb.Booster(model_file=bytearray(raw))
                booster.set_param({"nthread": 1})
                _BOOSTERS[digest] = booster
                logger.debug("booster %s deserialised in this process", digest[:12])
    return booster


@dataclass(frozen=True)
class _BlockPredictor:
    """Per-block prediction, shipped to workers (small: no model inside).

    Called on a block ``(time, layer, lat, lon, feature)`` with the model bytes, returns
    ``(time, layer, lat, lon, channel)`` float32: per target the back-transformed mean,
    then (with quantiles) lower and upper bounds per target, then the extrapolation flag
    and the count of features outside the envelope.
    """

    digest: str
    n_targets: int
    transform: str
    epsilon: float
    q_lo: tuple[tuple[float, ...], ...] | None  # (layers or 1, targets)
    q_hi: tuple[tuple[float, ...], ...] | None
    env_lo: tuple[float, ...] | None
    env_hi: tuple[float, ...] | None
    optional: tuple[bool, ...] | None = None  # features that may be missing (surface-only)
    n_classes: int = 1  # distance classes per layer in the quantile tables

    @property
    def n_channels(self) -> int:
        return self.n_targets * (1 if self.q_lo is None else 3) + 2

    def _quantiles(
        self,
        q: tuple[tuple[float, ...], ...],
        shape: tuple[int, ...],
        block_info: Any,
        dclass: np.ndarray | None,
    ) -> np.ndarray:
        """Per-row quantiles ``(rows, targets)`` from the row's layer (and distance class).

        The table's rows are ``layer * n_classes + class``; a one-row table serves every
        cell.
        """
        table = np.asarray(q, dtype=np.float64)
        if table.shape[0] == 1:
            return table[0]
        start = 0
        if block_info and block_info.get(0):
            start = int(block_info[0]["array-location"][1][0])
        index = (start + np.arange(shape[1]))[None, :, None, None] * self.n_classes
        if dclass is not None and self.n_classes > 1:
            index = index + dclass.reshape(1, 1, *shape[2:]).astype(np.int64)
        return table[np.broadcast_to(index, shape).reshape(-1)]

    def __call__(
        self,
        block: np.ndarray,
        raw: bytes,
        dclass: np.ndarray | None = None,
        block_info: Any = None,
    ) -> np.ndarray:
        shape = block.shape[:-1]
        X = np.ascontiguousarray(block.reshape(-1, block.shape[-1]), dtype=np.float32)
        out = np.full((X.shape[0], self.n_channels), np.nan, dtype=np.float32)
        required = (
            slice(None)
            if self.optional is None
            else np.array([not o for o in self.optional], dtype=bool)
        )
        valid = ~np.isnan(X[:, required]).any(axis=1)
        out[~valid, -2:] = -1.0
        if valid.any():
            Xv = X[valid]
            booster = _booster_from(raw, self.digest)
            pred = np.asarray(booster.inplace_predict(Xv, missing=np.nan), dtype=np.float64)
            pred = count_prediction(booster, pred.reshape(Xv.shape[0], -1))
            back = {"name": self.transform, "epsilon": self.epsilon}
            cols = [inverse_transform(pred, **back)]
            if self.q_lo is not None and self.q_hi is not None:
                lo = self._quantiles(self.q_lo, shape, block_info, dclass)
                hi = self._quantiles(self.q_hi, shape, block_info, dclass)
                if lo.ndim == 2:
                    lo, hi = lo[valid], hi[valid]
                cols.append(inverse_transform(pred + lo, **back))
                cols.append(inverse_transform(pred + hi, **back))
            values = np.concatenate(cols, axis=1)
            out[valid, : values.shape[1]] = values
            if self.env_lo is not None and self.env_hi is not None:
                outside = (Xv < np.asarray(self.env_lo, dtype=np.float32)) | (
                    Xv > np.asarray(self.env_hi, dtype=np.float32)
                )
                n_out = outside.sum(axis=1)
            else:
                n_out = np.zeros(Xv.shape[0])
            out[valid, -1] = n_out
            out[valid, -2] = n_out > 0
        return out.reshape(*shape, self.n_channels)


def _quantile_tables(
    tables: Sequence[Mapping[str, Any]], targets: Sequence[str]
) -> tuple[tuple[tuple[float, ...], ...], tuple[tuple[float, ...], ...]]:
    """Check quantile tables (one, or one per layer) and return ``(q_lo, q_hi)`` rows."""
    lows, highs = [], []
    for table in tables:
        missing = [t for t in targets if t not in table]
        if missing:
            raise ValueError(f"residual_quantiles: no (q_lo, q_hi) for targets {missing!r}.")
        # None (NaN in JSON): too few out-of-fold residuals for the quantile; NaN bounds
        lo = tuple(_nan_if_none(table[t][0]) for t in targets)
        hi = tuple(_nan_if_none(table[t][1]) for t in targets)
        bad = [t for t, a, b in zip(targets, lo, hi, strict=True) if a > b]
        if bad:
            raise ValueError(f"residual_quantiles: q_lo > q_hi for {bad!r}; expected q_lo <= q_hi.")
        lows.append(lo)
        highs.append(hi)
    return tuple(lows), tuple(highs)


def _num_targets(booster: xgb.Booster) -> int:
    config = json.loads(booster.save_config())
    return max(int(config["learner"]["learner_model_param"].get("num_target", "1")), 1)


def _check_features(features: xr.Dataset, booster: xgb.Booster) -> list[str]:
    if set(features.dims) != set(DIMS):
        raise ValueError(
            f"features: dims {tuple(features.dims)!r}; expected exactly {DIMS!r} "
            "(the fields contract). Rename or transpose before predicting."
        )
    names = features.attrs.get("features")
    if not names:
        raise ValueError(
            "features: attrs['features'] is missing or empty; it must list the model's "
            "feature names in training order."
        )
    names = [str(n) for n in names]
    missing = [n for n in names if n not in features.data_vars]
    if missing:
        raise ValueError(
            f"features: attrs['features'] names {missing!r} that are not variables; "
            f"variables: {sorted(map(str, features.data_vars))!r}."
        )
    for n in names:
        if features[n].dims != DIMS:
            raise ValueError(
                f"features: variable {n!r} has dims {features[n].dims!r}; expected {DIMS!r}. "
                f"Use features.transpose(*{DIMS!r})."
            )
    model_names = booster.feature_names
    if model_names is not None and list(model_names) != names:
        raise ValueError(
            f"booster: trained on features {list(model_names)!r} but the features Dataset "
            f"lists {names!r}; pass the features the model was trained with, in that order."
        )
    if booster.num_features() != len(names):
        raise ValueError(
            f"booster: expects {booster.num_features()} features, features Dataset has "
            f"{len(names)}: {names!r}."
        )
    return names


def _units_of(target: str) -> str:
    if target.startswith("conc_") and target.endswith("_per_l"):
        return "L-1"
    if target.endswith("_per_m3"):
        return "m-3"
    if target.startswith("flux"):
        return "mg m-2 d-1"
    return "1"


def _long_name_of(target: str) -> str:
    m = re.fullmatch(r"conc_(\w+?)_(\w+?)um_per_(l|m3)", target)
    if m:
        lo, hi = (s.replace("p", ".") for s in m.group(1, 2))
        return f"number concentration of particles of ESD {lo}-{hi} um"
    if target.startswith("flux_mgc"):
        return "particulate organic carbon flux (Guidi et al. 2008)"
    m = re.fullmatch(r"conc_(.+)_per_(l|m3)", target)
    if m:
        return f"number concentration of objects of the EcoTaxa category {m.group(1)}"
    return target.replace("_", " ")


def _coord_attrs(out: xr.Dataset) -> None:
    out["lat"].attrs.update(
        {"units": "degrees_north", "standard_name": "latitude", "long_name": "latitude"}
    )
    out["lon"].attrs.update(
        {"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude"}
    )
    out["time"].attrs.update({"standard_name": "time", "long_name": "time (month)"})
    out["layer"].attrs.update({"long_name": "depth layer (top-bottom, m, positive down)"})
    for c, what in zip(_LAYER_COORDS, ("top", "bottom"), strict=True):
        if c in out.coords:
            out[c].attrs.update(
                {"units": "m", "positive": "down", "long_name": f"depth of the layer {what}"}
            )


def _nan_if_none(value: Any) -> float:
    return float("nan") if value is None else float(value)


def predict_fields(
    features: xr.Dataset,
    booster: xgb.Booster,
    *,
    targets: Sequence[str],
    transform: Mapping[str, Any],
    residual_quantiles: Mapping[str, tuple[float, float]] | None = None,
    envelope: Mapping[str, tuple[float, float]] | None = None,
    units: Mapping[str, str] | None = None,
    config: FieldsConfig | None = None,
    quantiles_by_layer: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
    train_positions: tuple[np.ndarray, np.ndarray] | None = None,
) -> xr.Dataset:
    """Predict the fields of every cell, month and layer, lazily.

    Parameters
    ----------
    features : xarray.Dataset
        Dask-backed, dims ``(time, layer, lat, lon)``, one variable per feature,
        ``attrs["features"]`` the feature names in training order; NaN over land and
        below the sea floor. Coords ``layer``, ``layer_top_m``, ``layer_bottom_m`` are kept.
    booster : xgboost.Booster
        Model predicting ``len(targets)`` targets (multi-output or one), in the
        transformed space.
    targets : sequence of str
        Target names, in the model's output order.
    transform : mapping
        Training transform, ``{"name": "log10" | "none", "epsilon": float}``; fields are
        back-transformed with ``c = 10**y - epsilon`` (clipped at 0).
    residual_quantiles : mapping of str to (float, float), optional
        Per target, ``(q_lo, q_hi)`` of held-out residuals in the transformed space; adds
        ``<t>_lower = inverse(pred + q_lo)`` and ``<t>_upper = inverse(pred + q_hi)``.
    envelope : mapping of str to (float, float), optional
        Training envelope per feature (:func:`envelope_of`). Without it no cell is
        flagged (flag 0 over the ocean).
    quantiles_by_layer : mapping, optional
        ``{layer: {target: (q_lo, q_hi)}}``: per-layer (Mondrian) quantiles used instead of
        ``residual_quantiles`` in the layers they name (``residual_quantiles`` elsewhere).
        Keys ``"<layer>|<distance class>"`` (:func:`pipeline.model.intervals.distance_class`)
        refine a layer by the distance of each cell to the nearest training cast, with
        ``train_positions``.
    train_positions : (array, array), optional
        Latitudes and longitudes of the training casts (for the distance classes).
    units : mapping of str to str, optional
        Units per target; defaults: ``"L-1"`` for ``conc_*_per_l``, ``"mg m-2 d-1"`` for
        flux.
    config : FieldsConfig, optional
        Chunking and interval options.

    Returns
    -------
    xarray.Dataset
        Lazy, dims ``(time, layer, lat, lon)``: float32 ``<t>`` (and ``<t>_lower``,
        ``<t>_upper``), int8 ``extrapolation`` (1: some feature outside the envelope,
        0: inside, -1: not predicted) and int8 ``n_features_outside`` (-1: not predicted).
        NaN wherever any feature is NaN.

    Raises
    ------
    ValueError
        Features and model disagree (names, count, targets), or bad quantiles.

    See Also
    --------
    write_fields : writes the result to zarr.
    envelope_of : the training envelope.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"a": rng.random(50, dtype="f4"), "b": rng.random(50, dtype="f4")})
    >>> booster = xgb.train({"max_depth": 2}, xgb.DMatrix(X, label=X["a"]), 3)
    >>> coords = {"time": pd.date_range("2020-01-01", periods=2, freq="MS"),
    ...           "layer": np.array(["0-100m"], object), "lat": [0.5, 1.5], "lon": [0.5]}
    >>> var = (DIMS, np.full((2, 1, 2, 1), 0.5, "f4"))
    >>> feats = xr.Dataset({"a": var, "b": var}, coords=coords, attrs={"features": ["a", "b"]})
    >>> out = predict_fields(feats.chunk(time=1), booster, targets=["conc_1_2um_per_l"],
    ...                      transform={"name": "none"})
    >>> out["conc_1_2um_per_l"].shape, out["conc_1_2um_per_l"].attrs["units"]
    ((2, 1, 2, 1), 'L-1')
    """
    config = config or FieldsConfig()
    names = _check_features(features, booster)
    targets = [str(t) for t in targets]
    n_targets = _num_targets(booster)
    if len(targets) != n_targets or not targets:
        raise ValueError(
            f"targets: {targets!r} ({len(targets)}) but the booster predicts {n_targets} "
            "target(s); pass the model card's targets in output order."
        )
    name = str(transform.get("name", "none"))
    if name not in ("log10", "none"):
        raise ValueError(f"transform: name {name!r}; valid: 'log10', 'none'.")
    epsilon = float(transform.get("epsilon", 0.0)) if name == "log10" else 0.0

    q_lo = q_hi = None
    classes: np.ndarray | None = None
    n_classes = 1
    if residual_quantiles is not None:
        tables = [residual_quantiles]
        layers = [str(v) for v in np.asarray(features["layer"].values)]
        by = dict(quantiles_by_layer or {})
        if by and train_positions is not None and any("|" in k for k in by):
            labels = distance_class(np.array([0.0, *DISTANCE_BINS_KM])).tolist()
            n_classes = len(labels)
            tables = [
                by.get(f"{layer}|{label}", by.get(layer, residual_quantiles))
                for layer in layers
                for label in labels
            ]
            lat2, lon2 = np.meshgrid(features["lat"].values, features["lon"].values, indexing="ij")
            km = nearest_km(lat2.ravel(), lon2.ravel(), *train_positions).reshape(lat2.shape)
            classes = np.searchsorted(np.asarray(DISTANCE_BINS_KM), km, side="right")
        elif by:
            tables = [by.get(name, residual_quantiles) for name in layers]
        q_lo, q_hi = _quantile_tables(tables, targets)
    env_lo = env_hi = None
    if envelope is not None:
        missing = [n for n in names if n not in envelope]
        if missing:
            raise ValueError(f"envelope: no (min, max) for features {missing!r}.")
        env_lo = tuple(float(envelope[n][0]) for n in names)
        env_hi = tuple(float(envelope[n][1]) for n in names)

    feats = features[names]
    if config.lat_chunk is not None:
        feats = feats.chunk({"lat": config.lat_chunk})
        logger.info("features rechunked along lat to %d rows per block", config.lat_chunk)
    feats = feats.unify_chunks()
    arrays = [
        feats[n].data if isinstance(feats[n].data, da.Array) else da.from_array(feats[n].data)
        for n in names
    ]
    stacked = da.stack([a.astype(np.float32) for a in arrays], axis=-1).rechunk({4: len(names)})

    raw = bytes(booster.save_raw("ubj"))
    digest = hashlib.sha256(raw).hexdigest()
    model = dask.delayed(raw, name=f"xgboost-model-{digest[:16]}", pure=True)
    optional_names = set(optional_features(features))
    optional = tuple(n in optional_names for n in names) if optional_names else None
    predictor = _BlockPredictor(
        digest, n_targets, name, epsilon, q_lo, q_hi, env_lo, env_hi, optional, n_classes
    )
    channels = predictor.n_channels
    extra = []
    if classes is not None:
        extra = [
            da.from_array(
                classes[None, None, :, :, None].astype(np.int8),
                chunks=((1,), (1,), stacked.chunks[2], stacked.chunks[3], (1,)),
            )
        ]
    pred = da.map_blocks(
        predictor,
        stacked,
        model,
        *extra,
        dtype=np.float32,
        chunks=(*stacked.chunks[:4], (channels,)),
        name=f"predict-fields-{dask.base.tokenize(stacked, digest, predictor)}",
        meta=np.empty((0, 0, 0, 0, 0), dtype=np.float32),
    )
    logger.info(
        "fields: %d targets, %d blocks, model %s (%d bytes) shipped once per worker",
        n_targets,
        stacked.npartitions,
        digest[:12],
        len(raw),
    )

    units = dict(units or {})
    coords = {k: v for k, v in feats.coords.items() if set(v.dims) <= set(DIMS) and k not in names}
    out = xr.Dataset(coords=coords)
    out = out.assign_coords(layer=("layer", np.asarray(feats["layer"].values, dtype=object)))
    k = n_targets
    coverage = float(config.interval_coverage)
    for i, t in enumerate(targets):
        attrs = {"units": units.get(t, _units_of(t)), "long_name": _long_name_of(t)}
        out[t] = (DIMS, pred[..., i], attrs)
        if q_lo is not None and q_hi is not None:
            sides = (("lower", [r[i] for r in q_lo]), ("upper", [r[i] for r in q_hi]))
            for j, (side, per_layer) in enumerate(sides, start=1):
                q = per_layer[0] if len(per_layer) == 1 else per_layer
                out[f"{t}_{side}"] = (
                    DIMS,
                    pred[..., j * k + i],
                    {
                        "units": attrs["units"],
                        "long_name": f"{side} bound of the {coverage:.0%} prediction interval "
                        f"of {attrs['long_name']}",
                        "interval_coverage": coverage,
                        "residual_quantile": q,
                    },
                )
    out["extrapolation"] = (
        DIMS,
        pred[..., channels - 2].astype(np.int8),
        {
            "long_name": "prediction outside the training envelope",
            "flag_values": np.array([-1, 0, 1], dtype=np.int8),
            "flag_meanings": "not_predicted inside_envelope outside_envelope",
            "comment": "1 where any feature lies outside the training [min, max]; "
            "-1 where a feature is missing (land, below the sea floor)",
        },
    )
    out["n_features_outside"] = (
        DIMS,
        pred[..., channels - 1].astype(np.int8 if len(names) <= 127 else np.int16),
        {
            "long_name": "number of features outside the training envelope",
            "units": "1",
            "comment": "-1 where a feature is missing (land, below the sea floor)",
        },
    )
    _coord_attrs(out)
    out.attrs.update(
        {
            "features": list(names),
            "targets": list(targets),
            "transform": json.dumps({"name": name, "epsilon": epsilon}),
            "model_sha256": digest,
        }
    )
    return out
