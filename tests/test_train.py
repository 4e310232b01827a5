"""Training step: multi-output xgboost.dask on a real LocalCluster, baselines, CV, model I/O.

Synthetic data with a known truth: 6 features (x3..x5 pure noise), 3 targets that are
smooth functions of x0..x2 plus correlated Gaussian noise of known sigma, so the best
possible test MSE is the noise variance.
"""

from __future__ import annotations

import dataclasses
import json
import pickle

import numpy as np
import pandas as pd
import pytest
import xgboost

from pipeline.config import build_config
from pipeline.errors import ConfigError
from pipeline.model.baselines import Climatology, fit_baselines
from pipeline.model.card import hash_config, hash_frame, load_model, model_card, save_model
from pipeline.model.crossval import cross_validate
from pipeline.model.evaluate import score
from pipeline.model.train import (
    BASELINES,
    TrainConfig,
    _check_fit_input,
    _fit_surviving_worker_loss,
    _resolve_device,
    _worker_has_gpu,
    fit_model,
    predict,
)
from tests.dask_processes import two_worker_processes

SIGMA = 0.25
N_ROWS = 2000
FAST = TrainConfig(
    n_estimators=300,
    learning_rate=0.1,
    max_depth=4,
    early_stopping_rounds=15,
    rf_n_estimators=60,
    device="auto",
    min_rows_per_worker=500,  # both workers: the distributed fit is what is tested
)
LAYERS = np.array(["0-100m", "100-500m", "500-1000m"])


def make_data(n: int = N_ROWS, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Features, targets (signal + correlated noise of sd SIGMA) and the layer of each row."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n, 6))
    layer_idx = rng.integers(0, 3, size=n)
    X = pd.DataFrame(x, columns=[f"x{i}" for i in range(6)])
    X["layer_top_km"] = np.array([0.0, 0.1, 0.5])[layer_idx]
    signal = np.column_stack(
        [
            np.sin(2.0 * x[:, 0]) + 0.5 * x[:, 1] - 0.5 * layer_idx,
            x[:, 1] ** 2 + 0.8 * x[:, 0] - 0.4 * layer_idx,
            np.sin(2.0 * x[:, 0]) + 0.6 * x[:, 2] - 0.5 * layer_idx,
        ]
    )
    corr = np.array([[1.0, 0.6, 0.3], [0.6, 1.0, 0.3], [0.3, 0.3, 1.0]])
    noise = rng.multivariate_normal(np.zeros(3), SIGMA**2 * corr, size=n)
    Y = pd.DataFrame(signal + noise, columns=["conc_a_per_l", "conc_b_per_l", "flux_mgc_m2_d"])
    X.index = pd.RangeIndex(1000, 1000 + n)  # labels differ from positions on purpose
    Y.index = X.index
    return X, Y, LAYERS[layer_idx]


def make_folds(n: int, seed: int = 1, k: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    folds = rng.integers(0, k, size=n)
    folds[rng.random(n) < 0.2] = -1
    return folds


@pytest.fixture(scope="module")
def client():
    with two_worker_processes() as c:
        yield c


@pytest.fixture(scope="module")
def data():
    return make_data()


@pytest.fixture(scope="module")
def cv(client, data):
    X, Y, layer = data
    folds = make_folds(len(X))
    return cross_validate(client, X, Y, folds, layer=layer, config=FAST), folds


# ------------------------------------------------------------------ skill


def test_model_recovers_signal_to_the_noise_ceiling_and_beats_climatology(cv):
    result, _ = cv
    model = result.scores["model"]["test"]
    clim = result.scores["baselines"]["climatology"]["test"]
    # noise variance 0.0625; allow 40 % for the approximation error of 1200 training rows
    assert model["mse"] < 1.4 * SIGMA**2
    assert model["mse"] > 0.8 * SIGMA**2  # not fitting the noise of the test rows
    assert clim["mse"] > 3.0 * model["mse"]
    assert model["r2_mean"] > 0.8
    assert model["mv_mse"] < 0.35 * clim["mv_mse"]
    assert abs(np.array(list(model["bias"].values()))).max() < 0.05


def test_per_target_and_random_forest_baselines_have_skill_but_the_model_matches_them(cv):
    result, _ = cv
    base = result.scores["baselines"]
    clim_cv = base["climatology"]["cv"]["mean"]["mse"]
    for name in ("per_target", "random_forest"):
        assert base[name]["cv"]["mean"]["mse"] < 0.6 * clim_cv, name
        assert base[name]["test"]["r2_mean"] > 0.6, name
    assert (
        result.scores["model"]["cv"]["mean"]["mse"] < 1.05 * base["per_target"]["cv"]["mean"]["mse"]
    )
    assert result.scores["model"]["cv"]["mean"]["mse"] < base["random_forest"]["cv"]["mean"]["mse"]


def test_multi_output_booster_predicts_one_column_per_target_with_vector_leaves(cv, data):
    result, _ = cv
    X, _, _ = data
    assert predict(result.booster, X.iloc[:7]).shape == (7, 3)
    learner = json.loads(result.booster.save_config())["learner"]
    assert learner["learner_model_param"]["num_target"] == "3"
    # one vector-leaf tree per round, not one tree per target per round
    n_trees = learner["gradient_booster"]["gbtree_model_param"]["num_trees"]
    assert int(n_trees) == result.booster.num_boosted_rounds() == result.n_rounds
    assert result.booster.attr("device") == "cpu"  # no GPU on the test machine


# ------------------------------------------------------------------ cross-validation


def test_cv_predicts_every_non_test_row_out_of_fold_exactly_once(cv, data):
    result, folds = cv
    X, _, _ = data
    assert list(result.oof.index) == list(X.index[folds >= 0])
    assert not result.oof.isna().any().any()
    assert set(result.oof.columns.get_level_values("model")) == {"model", *BASELINES}
    assert list(result.test_index) == list(X.index[folds == -1])
    assert all(p.shape == ((folds == -1).sum(), 3) for p in result.test.values())
    n_cv = int((folds >= 0).sum())
    assert result.folds[-1] == {
        "fold": -1,
        "n_train": n_cv,
        "n_valid": int((folds == -1).sum()),
        "n_excluded": 0,
    }
    for info in result.folds[:-1]:
        assert info["n_valid"] == (folds == info["fold"]).sum()
        assert info["n_train"] + info["n_valid"] == n_cv
    assert len(result.best_iterations) == 3
    arrays = result.oof_arrays()
    assert list(arrays) == ["model", *BASELINES]
    assert arrays["model"].shape == (n_cv, 3)
    assert result.n_rounds == round(np.mean(np.array(result.best_iterations) + 1))
    assert result.booster.num_boosted_rounds() == result.n_rounds
    assert [f["fold"] for f in result.scores["model"]["cv"]["folds"]] == [0, 1, 2]


def test_cv_never_trains_on_the_validation_fold(client):
    # A feature equal to the target in fold 0 only, noise elsewhere: a model that saw fold 0
    # learns it (the control below), an honest out-of-fold prediction of fold 0 cannot.
    rng = np.random.default_rng(3)
    n = 900
    folds = np.repeat([0, 1, 2], n // 3)
    Y = pd.DataFrame({"y": rng.normal(size=n)})
    leak = np.where(folds == 0, Y["y"], rng.normal(size=n))
    X = pd.DataFrame({"leak": leak, "z": rng.normal(size=n)})
    config = TrainConfig(n_estimators=100, learning_rate=0.3, early_stopping_rounds=10)
    result = cross_validate(client, X, Y, folds, config=config, with_baselines=False)
    oof_fold0 = score(Y[folds == 0], result.oof.loc[folds == 0, ("model", "y")].to_numpy())
    assert oof_fold0["r2_mean"] < 0.1, oof_fold0["r2_mean"]
    seen = fit_model(client, X, Y, train=np.arange(n), config=config)
    assert score(Y[folds == 0], predict(seen, X[folds == 0]))["r2_mean"] > 0.5
    assert result.test["model"].shape == (0, 1)  # no test rows
    assert result.scores["model"]["test"] is None


def test_cv_exclude_leaves_buffer_rows_out_of_training(client):
    X, Y, _ = make_data(300, seed=5)
    folds = np.repeat([0, 1], 150)
    buffer = np.zeros(300, dtype=bool)
    buffer[150:190] = True  # 40 rows of fold 1 next to fold 0
    config = TrainConfig(n_estimators=20, early_stopping_rounds=5, baselines=())
    folds[:20] = -1  # test rows; the 10 rows after them are their buffer
    near_test = np.zeros(300, dtype=bool)
    near_test[20:30] = True
    exclude = {0: buffer, -1: near_test}
    result = cross_validate(client, X, Y, folds, exclude=exclude, config=config)
    assert result.folds == [
        {"fold": 0, "n_train": 110, "n_valid": 130, "n_excluded": 40},
        {"fold": 1, "n_train": 130, "n_valid": 150, "n_excluded": 0},
        {"fold": -1, "n_train": 270, "n_valid": 20, "n_excluded": 10},
    ]
    assert result.booster.attr("n_train_rows") == "270"


def test_cv_needs_two_folds(client, data):
    X, Y, _ = data
    with pytest.raises(ValueError, match=r"1 CV fold\(s\) \[0\]; cross-validation needs >= 2"):
        cross_validate(client, X, Y, np.zeros(len(X), dtype=int), config=FAST)


# ------------------------------------------------------------------ fitting behaviour


def test_early_stopping_stops_well_before_n_estimators_on_pure_noise(client):
    rng = np.random.default_rng(7)
    X = pd.DataFrame(rng.normal(size=(600, 4)), columns=list("abcd"))
    Y = pd.DataFrame(rng.normal(size=(600, 2)), columns=["u", "v"])
    config = TrainConfig(n_estimators=300, learning_rate=0.3, early_stopping_rounds=10)
    booster = fit_model(
        client, X, Y, train=np.arange(400), valid=np.arange(400, 600), config=config
    )
    best = int(booster.attr("best_iteration"))
    assert int(booster.attr("rounds_trained")) == best + 11 < 300
    assert booster.num_boosted_rounds() == best + 1  # cut to the best iteration
    assert booster.attr("n_train_rows") == "400"
    assert booster.attr("n_valid_rows") == "200"


def test_deterministic_fits_give_bit_identical_predictions(client, data):
    X, Y, _ = data
    config = TrainConfig(
        n_estimators=40,
        learning_rate=0.2,
        subsample=0.7,
        colsample_bytree=0.7,
        min_rows_per_worker=1,
    )
    train, valid = np.arange(1500), np.arange(1500, 2000)
    a = fit_model(client, X, Y, train=train, valid=valid, config=config)
    b = fit_model(client, X, Y, train=train, valid=valid, config=config)
    assert np.array_equal(predict(a, X), predict(b, X))
    assert a.save_raw("ubj") == b.save_raw("ubj")
    c = fit_model(
        client,
        X,
        Y,
        train=train,
        valid=valid,
        config=dataclasses.replace(config, seed=1),
    )
    assert not np.array_equal(predict(a, X), predict(c, X))  # the seed matters


def test_a_small_fit_runs_on_one_worker_and_a_large_one_on_every_worker(client, data):
    from distributed import get_task_stream

    X, Y, _ = data
    train = np.arange(1500)

    def fit_workers(config):
        with get_task_stream(client) as stream:
            booster = fit_model(client, X, Y, train=train, config=config)
        fits = {t["worker"] for t in stream.data if str(t["key"]).startswith("fn-")}
        return fits, predict(booster, X.iloc[:50])

    one, small = fit_workers(TrainConfig(n_estimators=20))  # 1,500 rows < 50,000 a worker
    both, large = fit_workers(TrainConfig(n_estimators=20, min_rows_per_worker=750))
    assert len(one) == 1
    assert len(both) == 2
    assert np.abs(small - large).mean() < 0.05  # the same model, up to the sketches


def test_fit_model_takes_masks_weights_and_dask_placed_partitions(client, data):
    X, Y, _ = data
    mask = np.zeros(len(X), dtype=bool)
    mask[:500] = True
    config = TrainConfig(n_estimators=10, multi_strategy="one_output_per_tree", deterministic=False)
    booster = fit_model(client, X, Y, train=mask, weight=np.linspace(1, 2, len(X)), config=config)
    assert booster.attr("n_train_rows") == "500"
    assert booster.num_boosted_rounds() == 10
    assert predict(booster, X.iloc[:3]).shape == (3, 3)


def test_climatology_baseline_is_the_per_layer_training_mean(client, data):
    X, Y, layer = data
    train = np.arange(1000)
    fitted = fit_baselines(
        client, X, Y, train=train, layer=layer, config=TrainConfig(baselines=("climatology",))
    )
    assert list(fitted) == ["climatology"]
    pred = fitted["climatology"](X.iloc[:50], layer[:50])
    expected = Y.iloc[train][layer[train] == layer[0]].mean().to_numpy()
    np.testing.assert_allclose(pred[0], expected)
    np.testing.assert_allclose(fitted["climatology"](X.iloc[:2])[0], Y.iloc[train].mean())


# ------------------------------------------------------------------ model I/O and card


def test_save_load_round_trip_predicts_identically(cv, data, tmp_path):
    result, _ = cv
    X, Y, _ = data
    card = model_card(
        booster=result.booster,
        features=list(X.columns),
        targets=list(Y.columns),
        transform={"name": "log10", "epsilon": 1e-3},
        config=FAST,
        scores=result.scores,
        data_hash=hash_frame(pd.concat([X, Y], axis=1)),
        config_hash=hash_config(FAST),
    )
    url = str(tmp_path / "run" / "model")
    save_model(result.booster, card, url)
    booster, loaded = load_model(url)
    assert np.array_equal(predict(booster, X), predict(result.booster, X))
    assert loaded == json.loads(json.dumps(card))
    assert sorted(p.name for p in (tmp_path / "run" / "model").iterdir()) == [
        "card.json",
        "model.ubj",
    ]


def test_model_card_records_features_targets_transform_params_scores_hashes(cv, data):
    result, _ = cv
    X, Y, _ = data
    card = model_card(
        booster=result.booster,
        features=list(X.columns),
        targets=list(Y.columns),
        transform={"name": "log10", "epsilon": 1e-3},
        config=FAST,
        scores=result.scores,
        data_hash=hash_frame(X),
        config_hash=hash_config(FAST),
        extra={"split": "random"},
    )
    assert card["features"] == list(X.columns)
    assert card["targets"] == ["conc_a_per_l", "conc_b_per_l", "flux_mgc_m2_d"]
    assert card["transform"] == {"name": "log10", "epsilon": 1e-3}
    assert card["params"]["multi_strategy"] == "multi_output_tree"
    assert card["params"]["device"] == "cpu"
    assert card["config"]["n_estimators"] == 300
    assert card["num_boosted_rounds"] == result.n_rounds
    assert card["scores"]["model"]["test"]["mse"] == pytest.approx(
        result.scores["model"]["test"]["mse"]
    )
    assert card["data_hash"].startswith("sha256:")
    assert card["config_hash"] == hash_config(FAST)
    assert card["extra"] == {"split": "random"}
    json.dumps(card, allow_nan=False)  # strict JSON
    with pytest.raises(ValueError, match="differ from the booster's"):
        model_card(
            booster=result.booster,
            features=["x0"],
            targets=[],
            transform={},
            config=FAST,
            scores={},
            data_hash="",
            config_hash="",
        )


def test_hash_frame_is_stable_and_content_sensitive(data):
    X, _, _ = data
    assert hash_frame(X) == hash_frame(X.copy())
    changed = X.copy()
    changed.iloc[5, 2] += 1e-12
    assert hash_frame(changed) != hash_frame(X)
    assert hash_frame(X.astype("float32")) != hash_frame(X)


def test_objects_shipped_or_kept_survive_pickle(cv, data):
    result, _ = cv
    X, _, layer = data
    for name, predictor in result.baselines.items():
        clone = pickle.loads(pickle.dumps(predictor))
        # the forest sums its trees in threads (n_jobs=-1): equal up to summation order
        np.testing.assert_allclose(
            clone(X.iloc[:20], layer[:20]), predictor(X.iloc[:20], layer[:20]), rtol=1e-12
        )
        assert name in BASELINES
    booster = pickle.loads(pickle.dumps(result.booster))
    assert np.array_equal(predict(booster, X.iloc[:20]), predict(result.booster, X.iloc[:20]))
    assert pickle.loads(pickle.dumps(FAST)) == FAST
    assert pickle.loads(pickle.dumps(_worker_has_gpu)) is _worker_has_gpu
    assert isinstance(pickle.loads(pickle.dumps(Climatology({}, np.zeros(2)))), Climatology)


# ------------------------------------------------------------------ device and errors


def test_device_auto_falls_back_to_cpu_without_gpu(client, caplog):
    with caplog.at_level("INFO", logger="pipeline.model.train"):
        assert _resolve_device(client, TrainConfig()) == "cpu"
    assert "device cpu (auto" in caplog.text
    assert _resolve_device(client, TrainConfig(device="cuda")) == "cuda"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"multi_strategy": "vector"},
            r"train.multi_strategy: 'vector'; valid: 'multi_output_tree'",
        ),
        ({"device": "gpu"}, r"train.device: 'gpu'; valid: 'auto', 'cpu', 'cuda'"),
        ({"baselines": ("mean",)}, r"train.baselines: .*unknown \['mean'\]; valid: 'climatology'"),
        ({"n_estimators": 0}, r"train.n_estimators: 0; expected an integer >= 1"),
        ({"subsample": 1.5}, r"train.subsample: 1.5; expected a number in \(0, 1\]"),
        ({"learning_rate": 0.0}, r"train.learning_rate: 0.0"),
        ({"early_stopping_rounds": 0}, r"train.early_stopping_rounds: 0"),
    ],
    ids=["strategy", "device", "baseline", "n_estimators", "subsample", "eta", "early"],
)
def test_config_errors_name_the_key_value_and_choices(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)


def test_config_loader_lists_valid_keys_and_prefixes_the_file():
    with pytest.raises(ConfigError, match=r"run.yaml: train.n_estimator: unknown key; valid: .*"):
        build_config(TrainConfig, {"n_estimator": 5}, where="run.yaml", section="train")
    with pytest.raises(ConfigError, match=r"run.yaml: train.device: 'tpu'"):
        build_config(TrainConfig, {"device": "tpu"}, where="run.yaml", section="train")
    cfg = build_config(TrainConfig, {"baselines": ["climatology"]}, where="r", section="train")
    assert cfg.baselines == ("climatology",)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda X, Y: (X.iloc[:-1], Y), "X has 1999 row"),
        (lambda X, Y: (X, Y.assign(conc_b_per_l=np.nan)), r"\['conc_b_per_l'\] hold NaN"),
        (lambda X, Y: (X.assign(site="a"), Y), r"non-numeric predictor column\(s\) \['site'\]"),
    ],
    ids=["length", "nan-target", "text-feature"],
)
def test_fit_input_errors_name_the_problem(data, change, message):
    X, Y, _ = data
    with pytest.raises(ValueError, match=message):
        _check_fit_input(*change(X, Y))


def test_predict_names_a_missing_feature(cv, data):
    result, _ = cv
    X, _, _ = data
    with pytest.raises(ValueError, match=r"lacks the feature\(s\) \['x5'\]"):
        predict(result.booster, X.drop(columns="x5"))


def test_device_probe_respects_hidden_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert _worker_has_gpu() is False
    assert isinstance(xgboost.build_info(), dict)


def test_a_failed_fit_with_every_worker_still_there_is_not_redone(client):
    calls = []

    def fit(workers):
        calls.append(list(workers))
        raise xgboost.core.XGBoostError("a plain error, no worker lost")

    with pytest.raises(xgboost.core.XGBoostError, match="plain error"):
        _fit_surviving_worker_loss(client, fit)
    assert len(calls) == 1
    assert len(calls[0]) == len(client.scheduler_info()["workers"])


def test_a_count_aware_objective_keeps_sparse_concentrations_unbiased(client):
    # Sparse counts (0.05-2 objects per cast): squared error on log10(N/V + eps) learns
    # the mean of the log, which back-transforms far below the mean concentration; the
    # Poisson objective with the volume as exposure predicts the rate itself, so the
    # total it predicts matches the objects counted. Its predictions come back in the
    # transformed space, like every other model's.
    rng = np.random.default_rng(11)
    n, eps = 4000, 1e-3
    X = pd.DataFrame({"a": rng.uniform(-1, 1, n), "b": rng.uniform(-1, 1, n)})
    volume = rng.uniform(200.0, 800.0, n)  # L imaged per layer
    rate = 0.001 * np.exp(1.2 * X["a"] + 0.6 * X["b"] ** 2)  # objects per L
    counts = rng.poisson(rate * volume)
    Y = pd.DataFrame({"c": np.log10(counts / volume + eps)})
    test = np.arange(3000, n)
    totals = {}
    for objective in ("squarederror", "poisson"):
        config = TrainConfig(objective=objective, count_epsilon=eps, n_estimators=200)
        folds = np.where(np.arange(n) < 3000, np.arange(n) % 3, -1)
        cv = cross_validate(
            client, X, Y, folds, config=config, with_baselines=False, exposure=volume
        )
        pred = cv.test["model"][:, 0]  # transformed space for both
        assert np.isfinite(pred).all()
        assert pred.min() >= np.log10(eps) - 1e-9
        totals[objective] = float(((10.0**pred - eps) * volume[test]).sum() / counts[test].sum())
        if objective == "poisson":
            assert cv.booster.attr("objective") == "poisson"
            rate_hat = 10.0 ** predict(cv.booster, X.iloc[test])[:, 0] - eps
            assert np.corrcoef(np.log(rate_hat), np.log(rate[test]))[0, 1] > 0.9
    assert 0.85 < totals["poisson"] < 1.15, totals
    assert totals["squarederror"] < 0.75, totals  # the log-space fit loses objects (seen 0.64)
