"""`oceanfields run` and its step commands: progress, dashboard, skill table, skips, errors."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli.main import main
from pipeline.demo import generate_demo_world

pytestmark = pytest.mark.slow  # whole chains on demo worlds and clusters


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    base = tmp_path_factory.mktemp("runcli")
    world = generate_demo_world(
        # the simple world: the CLI's behaviour, not skill (test_run_skill.py)
        str(base / "world"),
        resolution=6.0,
        n_profiles=60,
        n_images=0,
        seed=5,
        world="simple",
    )
    doc = {
        "inputs": {"catalog": "demo", "params": {"root": world.root}, "truth": "truth_profiles"},
        "split": {"n_folds": 3, "block_deg": 20, "variants": ["random"]},
        "train": {"n_estimators": 40, "baselines": ["climatology"], "early_stopping_rounds": 5},
        "out": str(base / "run"),
    }
    path = base / "run.yaml"
    path.write_text(yaml.safe_dump(doc))
    cluster = base / "cluster.yaml"
    cluster.write_text("cluster:\n  type: local\n  n_workers: 2\n  threads_per_worker: 1\n")
    return path, cluster, base / "run"


@pytest.fixture(scope="module")
def first_run(run_file):
    path, cluster, _out = run_file
    res = CliRunner().invoke(main, ["run", str(path), "--cluster", str(cluster)])
    assert res.exit_code == 0, res.output
    return res.output


def test_run_prints_the_dashboard_each_step_and_the_skill_table(first_run, run_file):
    _, _, out = run_file
    assert "Dask dashboard: http://127.0.0.1:" in first_run
    for step in ("targets", "matchup", "train", "fields", "report"):
        assert f"[{step}] running" in first_run
    assert "target rows" in first_run
    assert "region(s) written" in first_run
    assert "block-CV MSE" in first_run
    assert "random-CV MSE" in first_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert f"{metrics['model']['test']['mse']:.4f}" in first_run  # the headline: plain MSE
    assert f"{metrics['model']['test']['mv_mse']:.3f}" in first_run
    assert "noise ceiling" in first_run
    assert f"report: {out}/report/index.html" in first_run


def test_running_a_finished_run_again_skips_every_step(first_run, run_file):
    path, cluster, _ = run_file
    res = CliRunner().invoke(main, ["run", str(path), "--cluster", str(cluster)])
    assert res.exit_code == 0, res.output
    for step in ("targets", "matchup", "train", "fields", "report"):
        assert f"[{step}] already done with these inputs; skipped." in res.output
    assert "running" not in res.output


def test_a_step_command_reruns_only_its_step_when_its_config_changed(first_run, run_file, tmp_path):
    path, cluster, _out = run_file
    doc = yaml.safe_load(path.read_text())
    doc["report"] = {"month": 7}
    changed = tmp_path / "run.yaml"
    changed.write_text(yaml.safe_dump(doc))
    res = CliRunner().invoke(main, ["report", str(changed), "--cluster", str(cluster)])
    assert res.exit_code == 0, res.output
    assert "[report] running" in res.output
    assert "[fields]" not in res.output


def test_a_bad_run_file_is_one_line_naming_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("split:\n  blok_deg: 5\n")
    res = CliRunner().invoke(main, ["run", str(path)])
    assert res.exit_code == 1
    assert f"ConfigError: {path}: split.blok_deg: unknown key; valid: block_deg" in res.output
    assert "Traceback" not in res.output


def test_a_run_without_an_output_says_how_to_give_one(tmp_path):
    path = tmp_path / "noout.yaml"
    path.write_text("inputs:\n  catalog: demo\nsplit:\n  n_folds: 3\n")
    res = CliRunner().invoke(main, ["run", str(path)])
    assert res.exit_code == 1
    assert "no output: give --out URL or 'out:' in the run file." in res.output
