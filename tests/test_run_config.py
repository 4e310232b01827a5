"""The run file: it names what it reads, and its relative paths are taken from its folder."""

from __future__ import annotations

import os
import re

import pytest
import yaml

from pipeline.errors import ConfigError
from pipeline.run.config import RunConfig, load_run_config


def _write(path, doc):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """Run from a working directory that is not the run file's folder."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def test_relative_paths_in_a_run_file_resolve_from_its_folder(tmp_path, elsewhere):
    folder = tmp_path / "project" / "runs"
    doc = {
        "inputs": {
            "catalog": "../catalogs/mine.yaml",
            "params": {"root": "world", "data_dir": "./raw/", "dataset_id": "a/b"},
            "objects": "ecotaxa",
            "labels": "labels/part-0.parquet",
        },
        "object_targets": {"labels": "machine"},
        "out": "../out/run",
    }
    config = load_run_config(_write(folder / "run.yaml", doc))
    assert config.out == str(tmp_path / "project" / "out" / "run")
    assert config.inputs.catalog == str(tmp_path / "project" / "catalogs" / "mine.yaml")
    assert config.inputs.params == {
        "root": str(folder / "world"),
        "data_dir": str(folder / "raw"),
        "dataset_id": "a/b",  # not a location: as written
    }
    assert config.inputs.labels == str(folder / "labels" / "part-0.parquet")
    assert os.getcwd() == str(elsewhere)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("out", "s3://bucket/run"),
        ("out", "/data/run"),
        ("root", "gs://bucket/world"),
        ("root", "/data/world"),
        ("labels", "zip://labels.parquet::s3://bucket/labels.zip"),
        ("catalog", "demo"),
        ("catalog", "https://example.org/catalog.yaml"),
    ],
    ids=["s3-out", "absolute-out", "gs-root", "absolute-root", "chained-url", "name", "https"],
)
def test_urls_absolute_paths_and_catalog_names_are_kept_as_written(tmp_path, elsewhere, key, value):
    doc = {"inputs": {"catalog": "demo", "params": {"root": "/w"}}}
    if key == "out":
        doc["out"] = value
    elif key == "root":
        doc["inputs"]["params"]["root"] = value
    else:
        doc["inputs"][key] = value
    if key == "labels":
        doc["inputs"]["objects"] = "ecotaxa"
        doc["object_targets"] = {"labels": "machine"}
    config = load_run_config(_write(tmp_path / "run.yaml", doc))
    found = {
        "out": config.out,
        "root": config.inputs.params["root"],
        "labels": config.inputs.labels,
        "catalog": config.inputs.catalog,
    }
    assert found[key] == value


def test_a_home_relative_path_is_expanded_not_joined(tmp_path, elsewhere, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    doc = {"inputs": {"catalog": "demo", "params": {"root": "~/world"}}}
    config = load_run_config(_write(tmp_path / "run.yaml", doc))
    assert config.inputs.params["root"] == str(tmp_path / "home" / "world")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("split:\n  n_folds: 3\n", r"run\.yaml: inputs: missing; a run file names what it reads"),
        ("", r"run\.yaml: inputs: missing; .*e\.g\. 'inputs: \{catalog: demo, params: \{root: "),
        (
            "inputs:\n  params: {root: world}\n",
            r"run\.yaml: inputs\.catalog: missing; add the catalog the run reads",
        ),
    ],
    ids=["no-inputs", "empty-file", "no-catalog"],
)
def test_a_run_file_without_a_catalog_names_the_file_and_what_to_add(tmp_path, text, match):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        load_run_config(path)
    assert str(info.value).startswith(f"{path}: ")


def test_a_typo_is_named_before_the_missing_inputs(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("split:\n  blok_deg: 5\n")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}: split\.blok_deg: unknown"):
        load_run_config(path)


def test_python_callers_keep_the_defaults_and_their_paths_as_written(elsewhere):
    assert RunConfig().inputs.catalog == "demo"
    config = load_run_config({"inputs": {"params": {"root": "world"}}, "out": "out/run"})
    assert (config.inputs.catalog, config.inputs.params["root"], config.out) == (
        "demo",
        "world",
        "out/run",
    )


def test_cross_section_errors_of_a_run_file_name_the_file_and_key(tmp_path):
    doc = {"inputs": {"catalog": "demo"}, "object_targets": {"labels": "machine"}}
    path = _write(tmp_path / "run.yaml", doc)
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(str(path))}: object_targets\.labels: 'machine' needs "
    ) as info:
        load_run_config(path)
    assert info.value.key == "object_targets.labels"


def test_the_config_a_run_records_loads_back_as_the_same_config(tmp_path):
    from pipeline.run.config import run_config_to_dict

    doc = {
        "inputs": {"catalog": "demo", "params": {"root": "world"}, "truth": "truth_profiles"},
        "targets": {"layers": [[0, 200], [200, 1000]]},
        "object_targets": {"statuses": ["V"], "min_objects": 2},
        "split": {"n_folds": 3, "buffer_km": 100.0},
        "out": "out/run",
    }
    config = load_run_config(doc)
    recorded = run_config_to_dict(config)  # what run.json holds
    path = _write(tmp_path / "again.yaml", recorded)
    again = load_run_config(path)
    assert [layer.name for layer in again.object_targets.layers] == ["0-200m", "200-1000m"]
    assert again.object_targets == config.object_targets
    assert again.split == config.split
    assert again.targets == config.targets
