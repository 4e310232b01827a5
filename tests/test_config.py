"""The one validation dialect: the ``check_*`` helpers and every config's errors in one shape."""

from __future__ import annotations

import dataclasses
import importlib
import math
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import (
    build_config,
    check_choice,
    check_count,
    check_positive,
    check_range,
    check_strings,
    config_error,
)
from pipeline.errors import ConfigError

# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("value", "kwargs"),
    [
        (2, {"minimum": 2}),
        (np.int64(3), {"minimum": 1}),
        (0, {}),
        (None, {"minimum": 1, "allow_none": True}),
        (1024, {"minimum": 8, "maximum": 1024}),
    ],
    ids=["at-minimum", "numpy-int", "default-minimum-0", "none-allowed", "at-maximum"],
)
def test_check_count_accepts_integers_in_bounds(value, kwargs):
    assert check_count("k.n", value, **kwargs) is None


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        (1, {"minimum": 2}, "k.n: 1; expected an integer >= 2."),
        (2.5, {"minimum": 2}, "k.n: 2.5; expected an integer >= 2."),
        (2.0, {"minimum": 2}, "k.n: 2.0; expected an integer >= 2."),
        (True, {"minimum": 0}, "k.n: True; expected an integer >= 0."),
        ("3", {"minimum": 0}, "k.n: '3'; expected an integer >= 0."),
        (None, {"minimum": 0}, "k.n: None; expected an integer >= 0."),
        (0, {"minimum": 1, "allow_none": True}, "k.n: 0; expected an integer >= 1 (or None)."),
        (2048, {"minimum": 8, "maximum": 1024}, "k.n: 2048; expected an integer from 8 to 1024."),
        (0, {"minimum": 1, "fix": "give 1 or more"}, "k.n: 0; expected an integer >= 1; give 1 "),
    ],
    ids=[
        "below",
        "float",
        "integral-float",
        "bool",
        "string",
        "none",
        "optional-below",
        "above-maximum",
        "with-fix",
    ],
)
def test_check_count_names_the_key_the_value_and_what_is_expected(value, kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        check_count("k.n", value, **kwargs)
    assert info.value.key == "k.n"


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        (0.0, {"low": 0, "high": 1, "low_open": True}, "k.x: 0.0; expected a number in (0, 1]."),
        (1.0, {"low": 0, "high": 1, "high_open": True}, "k.x: 1.0; expected a number in [0, 1)."),
        (-1, {"low": 0, "unit": "km"}, "k.x: -1; expected a finite number >= 0 (km)."),
        (math.inf, {"low": 0}, "k.x: inf; expected a finite number >= 0."),
        (math.nan, {"low": 0, "high": 180}, "k.x: nan; expected a number in [0, 180]."),
        (5, {"high": 2}, "k.x: 5; expected a finite number <= 2."),
        ("0.5", {"low": 0, "high": 1}, "k.x: '0.5'; expected a number in [0, 1]."),
        (False, {"low": 0, "high": 1}, "k.x: False; expected a number in [0, 1]."),
        (
            2,
            {"low": 0, "high": 1, "fix": "e.g. 0.9"},
            "k.x: 2; expected a number in [0, 1]; e.g. 0.9.",
        ),
    ],
    ids=[
        "low-open",
        "high-open",
        "below-with-unit",
        "infinite",
        "nan",
        "above",
        "string",
        "bool",
        "with-fix",
    ],
)
def test_check_range_names_the_interval_and_the_unit(value, kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_range("k.x", value, **kwargs)


@pytest.mark.parametrize(
    "value",
    [0.5, 1, np.float32(0.25), np.int32(1)],
    ids=["float", "int", "numpy-float", "numpy-int"],
)
def test_check_range_accepts_ints_and_numpy_numbers(value):
    assert check_range("k.x", value, low=0, high=1, low_open=True) is None


@pytest.mark.parametrize(
    ("value", "ok"),
    [(1e-9, True), (3, True), (0, False), (-2.0, False), (math.inf, False)],
    ids=["tiny", "int", "zero", "negative", "infinite"],
)
def test_check_positive_is_a_finite_number_above_zero(value, ok):
    if ok:
        check_positive("k.bin_m", value, unit="m")
    else:
        with pytest.raises(
            ConfigError, match=r"^k\.bin_m: .*; expected a finite number > 0 \(m\)\.$"
        ):
            check_positive("k.bin_m", value, unit="m")


@pytest.mark.parametrize(
    ("value", "valid", "message"),
    [
        ("grid", ("blocks", "basins"), "k.method: 'grid'; valid: 'blocks', 'basins'."),
        (1, (True, False, "auto"), "k.method: 1; valid: True, False, 'auto'."),
        (True, (1, 2), "k.method: True; valid: 1, 2."),
        (None, ("a",), "k.method: None; valid: 'a'."),
    ],
    ids=["unknown-string", "one-is-not-true", "true-is-not-one", "none"],
)
def test_check_choice_lists_the_choices(value, valid, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_choice("k.method", value, valid)


def test_check_choice_accepts_a_valid_bool_and_string():
    check_choice("k.gpu", True, (True, False, "auto"))
    check_choice("k.gpu", "auto", (True, False, "auto"))


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        (
            "area",
            {},
            "k.features: 'area' is one string; expected a list of strings, e.g. features=['area'].",
        ),
        (["a", 1], {}, "k.features: ['a', 1]; expected a list of strings."),
        ({"a": 1}, {}, "k.features: {'a': 1}; expected a list of strings."),
        (
            ["a", "x"],
            {"valid": ("a", "b")},
            "k.features: ['a', 'x'] holds unknown ['x']; valid: 'a', 'b'.",
        ),
        ([], {"min_items": 1}, "k.features: []; expected at least 1 name(s)."),
        (
            ["a", "a"],
            {"distinct": True},
            "k.features: ['a', 'a'] repeats ['a']; expected distinct names.",
        ),
        (None, {}, "k.features: None; expected a list of strings."),
        (["x"], {"valid": ("a",), "fix": "'a' means all"}, "valid: 'a'; 'a' means all."),
    ],
    ids=[
        "one-string",
        "not-all-strings",
        "mapping",
        "unknown-name",
        "too-few",
        "repeated",
        "none-not-allowed",
        "with-fix",
    ],
)
def test_check_strings_names_the_bad_names(value, kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_strings("k.features", value, **kwargs)


def test_check_strings_returns_a_tuple_and_passes_none_when_allowed():
    assert check_strings("k.f", ["a", "b"], valid="abc", distinct=True) == ("a", "b")
    assert check_strings("k.f", (), min_items=0) == ()
    assert check_strings("k.f", None, allow_none=True) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "k.walltime: '2h'; write e.g. 02:00:00."),
        (
            {"problem": "is not a SLURM time"},
            "k.walltime: '2h' is not a SLURM time; write e.g. 02:00:00.",
        ),
        ({"fix": "quote it in YAML."}, "k.walltime: '2h'; write e.g. 02:00:00; quote it in YAML."),
    ],
    ids=["plain", "problem", "fix"],
)
def test_config_error_has_one_shape(kwargs, message):
    err = config_error("k.walltime", "2h", "write e.g. 02:00:00", **kwargs)
    assert isinstance(err, ConfigError)
    assert str(err) == message
    assert err.key == "k.walltime"


def test_config_error_keeps_its_key_through_pickle():
    err = pickle.loads(pickle.dumps(config_error("split.n_folds", 1, "expected 2")))
    assert (str(err), err.key) == ("split.n_folds: 1; expected 2.", "split.n_folds")


# --------------------------------------------------------------------------- build_config


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Step:
    n: int = 2

    def __post_init__(self):
        check_count("step.n", self.n, 2)  # a step config: its key in full


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Nested:
    maximum: int = 1

    def __post_init__(self):
        check_count("maximum", self.maximum, 1)  # nested: relative to its section


@pytest.mark.parametrize(
    ("cls", "section", "values", "message", "key"),
    [
        (_Step, "step", {"n": 1}, "run.yaml: step.n: 1; expected an integer >= 2.", "step.n"),
        (
            _Nested,
            "cluster.adaptive",
            {"maximum": 0},
            "run.yaml: cluster.adaptive.maximum: 0; expected an integer >= 1.",
            "cluster.adaptive.maximum",
        ),
    ],
    ids=["full-key", "relative-key"],
)
def test_build_config_prefixes_the_file_and_the_section_once(cls, section, values, message, key):
    with pytest.raises(ConfigError) as info:
        build_config(cls, values, where="run.yaml", section=section)
    assert str(info.value) == message
    assert info.value.key == key


# --------------------------------------------------------------------------- every config

# (module, class, bad options, the key the error names): one per config class.
CONFIGS = [
    ("pipeline.model.split", "SplitConfig", {"n_folds": 1}, "split.n_folds"),
    ("pipeline.model.train", "TrainConfig", {"device": "tpu"}, "train.device"),
    ("pipeline.targets.particles", "TargetConfig", {"bin_m": 0.0}, "targets.bin_m"),
    ("pipeline.targets.objects", "ObjectTargetConfig", {"statuses": ()}, "object_targets.statuses"),
    ("pipeline.predictors.features", "PredictorConfig", {"derived": ("x",)}, "predictors.derived"),
    ("pipeline.fields.predict", "FieldsConfig", {"lat_chunk": 0}, "fields.lat_chunk"),
    ("pipeline.predictors.grid", "GridConfig", {"method": "cubic"}, "grid.method"),
    (
        "pipeline.sources.environment",
        "EnvironmentSource",
        {"entry": "sst", "time": "monthly"},
        "inputs.environment[sst].time",
    ),
    (
        "pipeline.run.config",
        "InputsConfig",
        {"environment_time": ("2020",)},
        "inputs.environment_time",
    ),
    ("pipeline.scaling", "ScalingConfig", {"repeats": 0}, "scaling.repeats"),
    ("pipeline.images.classify", "ClassifyConfig", {"top_k": 0}, "images.classify.top_k"),
    (
        "pipeline.images.training_config",
        "ImageTrainConfig",
        {"balance": "x"},
        "images.train.balance",
    ),
    ("pipeline.images.dataset", "Preprocess", {"size": 4}, "preprocess.size"),
    ("pipeline.images.gbt", "GBTConfig", {"max_depth": 0}, "gbt.max_depth"),
    ("pipeline.images.heads", "HeadConfig", {"n_folds": 1}, "images.head.n_folds"),
    ("pipeline.images.qc", "QCConfig", {"near_bits": 16}, "images.qc.near_bits"),
    ("pipeline.images.handcrafted", "FeatureConfig", {"threshold": 300}, "features.threshold"),
    ("pipeline.images.morphology", "MorphologyConfig", {"n_types": 1}, "morphology.n_types"),
    ("pipeline.clusters.config", "LocalConfig", {"threads_per_worker": 0}, "threads_per_worker"),
    ("pipeline.clusters.config", "AdaptiveConfig", {"minimum": 3, "maximum": 1}, "maximum"),
    ("pipeline.clusters.config", "ResourceQuantities", {"memory": "8GiB"}, "memory"),
    ("pipeline.clusters.config", "KubernetesGpuConfig", {"name": "GPU"}, "name"),
    ("pipeline.clusters.config", "KubernetesConfig", {"image": " "}, "image"),
    ("pipeline.clusters.config", "SlurmGpuConfig", {"gpus_per_job": 0}, "gpus_per_job"),
    ("pipeline.clusters.config", "SlurmConfig", {"walltime": "2h"}, "walltime"),
    ("pipeline.clusters.config", "GatewayConfig", {"address": "gw:80"}, "address"),
]


@pytest.mark.parametrize(("module", "name", "kwargs", "key"), CONFIGS, ids=[c[1] for c in CONFIGS])
def test_every_config_raises_one_shape_of_error_naming_its_key(module, name, kwargs, key):
    cls = getattr(importlib.import_module(module), name)
    with pytest.raises(ConfigError) as info:
        cls(**kwargs)
    assert info.value.key == key
    assert re.fullmatch(rf"{re.escape(key)}: .+; .+\.", str(info.value)), str(info.value)


def test_every_config_class_with_checks_is_in_the_shape_test():
    """A new config with a ``__post_init__`` joins CONFIGS (and so the one dialect)."""
    pattern = re.compile(r"^class (\w+):\n(?:(?!^class ).)*?def __post_init__", re.M | re.S)
    found = set()
    for path in sorted((Path(__file__).resolve().parents[1] / "pipeline").rglob("*.py")):
        found |= set(pattern.findall(path.read_text(encoding="utf-8")))
    # RunConfig: tests/test_run_config; the demo's random fields build state, check nothing
    assert found - {c[1] for c in CONFIGS} == {"RunConfig", "RandomField", "HiddenWorld"}
