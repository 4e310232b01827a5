"""`oceanfields demo` end to end on a small world: every catalog entry read and reconciled."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.cli.main import main
from pipeline.io import read_bytes

ARGS = [
    "--resolution",
    "10",
    "--profiles",
    "12",
    "--images",
    "200",
    "--seed",
    "3",
    "--image-epochs",
    "2",
    "--quick",
    # TODO(issue 15): move to the realistic world with the new evaluation
    "--world-kind",
    "simple",
]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    res = CliRunner().invoke(main, ["demo", "--out", str(out), *ARGS])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_demo_reads_every_catalog_entry_through_the_readers(demo_run):
    out, output = demo_run
    for entry in ("environment", "ecopart_detailed", "ecopart_raw", "ecotaxa", "truth_fields"):
        assert f"[{entry}]" in output
    assert "Dask dashboard: http://127.0.0.1:" in output
    assert "12 file(s):" in output
    assert "variables: ['chl', 'deptho', 'mask', 'mlotst', 'o2', 'so', 'thetao', 'uo', 'vo']" in (
        output
    )
    for entry in ("ecopart_detailed", "ecopart_raw", "ecotaxa"):
        summary = json.loads((out / "tables" / entry / "summary.json").read_text())
        assert summary["reconciles"], entry
        assert summary["rows_quarantined"] == 0, (entry, summary["by_reason"])
        assert summary["rows_accepted"] > 0


def test_demo_raw_and_detailed_exports_give_the_same_particles(demo_run):
    out, _ = demo_run
    keys = ["profile_id", "depth_m"]
    detailed = pd.read_parquet(out / "tables" / "ecopart_detailed" / "particles.parquet")
    raw = pd.read_parquet(out / "tables" / "ecopart_raw" / "particles.parquet")
    detailed = detailed.sort_values(keys, ignore_index=True)
    raw = raw.sort_values(keys, ignore_index=True)
    assert len(detailed) == len(raw) > 0
    pd.testing.assert_frame_equal(detailed, raw, check_exact=False, rtol=1e-9)


def test_demo_objects_match_the_truth_of_the_world(demo_run):
    out, _ = demo_run
    objects = pd.read_parquet(out / "tables" / "ecotaxa" / "objects.parquet")
    world = json.loads((out / "world" / "world.json").read_text())
    assert len(objects) == world["counts"]["objects_written"] == world["counts"]["images"]
    assert objects["image"].str.endswith(".png").all()
    assert objects["lat"].between(-90, 90).all()


def test_demo_reuses_an_existing_world_with_the_same_parameters(demo_run):
    out, _ = demo_run
    res = CliRunner().invoke(main, ["demo", "--out", str(out), *ARGS])
    assert res.exit_code == 0, res.output
    assert "reusing it" in res.output


def test_demo_runs_the_year1_chain_and_prints_the_skill_table(demo_run):
    out, output = demo_run
    run = out / "run"
    for name in (
        "targets.parquet",
        "matchup.parquet",
        "model/model.ubj",
        "metrics.json",
        "fields.zarr",
        "report/index.html",
    ):
        assert (run / name).exists(), name
    assert "Skill (transformed space; MSE = mean over targets" in output
    metrics = json.loads((run / "metrics.json").read_text())
    assert f"{metrics['model']['test']['mse']:.4f}" in output
    assert f"{metrics['model']['test']['mv_mse']:.3f}" in output
    assert "conc_type_1_per_l" in metrics["targets"]  # per-type targets from the EcoTaxa images
    assert f"oceanfields run {out / 'run.yaml'}" in output


def test_demo_runs_the_image_path_and_the_year2_chain(demo_run):
    out, output = demo_run
    images = out / "images"
    made = json.loads((images / "summary.json").read_text())
    assert f"adjusted Rand index against the world's true particle types: {made['ari']:.3f}" in (
        output
    )
    assert made["ari"] > 0.8  # the morphological types recover the world's particle types
    names = (
        "types/labels/part-0.parquet",
        "types/plate.png",
        "model/model.json",
        "model/metrics.json",
        "classified/manifest.json",
        "consistency/index.html",
    )
    for name in names:
        assert (images / name).exists(), name
    labels = pd.read_parquet(images / "classified" / "labels")
    objects = pd.read_parquet(out / "tables" / "ecotaxa" / "objects.parquet")
    assert sorted(labels["object_id"]) == sorted(objects["object_id"])
    year1 = json.loads((out / "run" / "metrics.json").read_text())
    assert {"conc_type_1_per_l", "conc_type_4_per_l"} <= set(year1["targets"])
    year2 = json.loads((out / "run-year2" / "metrics.json").read_text())
    groups = {f"conc_{g}_per_l" for g in ("Copepoda", "Rhizaria", "Chaetognatha")}
    assert groups <= set(year2["targets"])
    targets2 = pd.read_parquet(out / "run-year2" / "targets.parquet")
    assert set(targets2["layer"]) == {"0-200m"}


def test_without_torch_the_demo_keeps_the_types_and_year2_counts_the_human_labels(
    demo_run, tmp_path, monkeypatch, capsys
):
    import sys

    from pipeline.catalog import open_catalog, read_entry
    from pipeline.cli.demo import demo_images, write_demo_year2_config
    from pipeline.run.config import load_run_config

    out, _ = demo_run
    (tmp_path / "world").symlink_to(out / "world")
    objects = read_entry(open_catalog("demo", root=str(out / "world")), "ecotaxa").accepted
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    for name in ("pipeline.images.training", "pipeline.images.model"):  # imported with torch
        monkeypatch.delitem(sys.modules, name, raising=False)
    made = demo_images(str(tmp_path), objects, None)
    assert made["labels"] is None
    assert made["ari"] > 0.8
    assert (tmp_path / "images" / "types" / "labels" / "part-0.parquet").exists()
    assert not (tmp_path / "images" / "model").exists()
    assert "needs the images extra" in capsys.readouterr().out
    config = load_run_config(
        write_demo_year2_config(str(tmp_path), str(out / "world"), labels=None, quick=True)
    )
    assert config.inputs.labels is None
    assert config.object_targets.labels == "annotated"
    assert [layer.name for layer in config.targets.layers] == ["0-200m"]
    assert config.split.n_folds == 3
    assert config.train.baselines == ("climatology",)


def test_demo_run_files_load_back_as_the_demo_run_config(tmp_path):
    from pipeline.cli.demo import demo_run_config, write_demo_run_config, write_demo_year2_config
    from pipeline.demo.truth import GROUPS
    from pipeline.run.config import load_run_config

    world, types, labels = (str(tmp_path / name) for name in ("world", "types", "labels"))
    year1 = load_run_config(write_demo_run_config(str(tmp_path), world, types=types, quick=True))
    run = str((tmp_path / "run").resolve())
    assert year1 == demo_run_config(world, labels=types, quick=True, out=run)
    assert (year1.inputs.truth, year1.object_targets.labels) == ("truth_profiles", "machine")
    assert (year1.split.n_folds, year1.train.n_estimators) == (3, 200)
    path = write_demo_year2_config(str(tmp_path), world, labels=labels)
    assert "  layers:\n  - - 0\n    - 200\n" in (tmp_path / "run-year2.yaml").read_text()
    year2 = load_run_config(path)
    assert year2.inputs.truth is None
    assert year2.inputs.labels == str((tmp_path / "labels").resolve())
    assert [layer.name for layer in year2.targets.layers] == ["0-200m"]
    assert year2.object_targets.categories == GROUPS
    assert year2.split == demo_run_config(world, labels=labels).split  # not quick: defaults


def test_demo_run_files_on_s3_load_back_as_the_demo_run_config(tmp_path, s3, monkeypatch):
    from pipeline.cli.demo import demo_run_config, write_demo_run_config, write_demo_year2_config
    from pipeline.run.config import load_run_config

    endpoint_url, _ = s3
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint_url)
    world = str(tmp_path / "world")
    out, types = s3.url("demo"), s3.url("demo/images/types/labels")
    path = write_demo_run_config(out, world, types=types, quick=True)
    assert path == s3.url("demo/run.yaml")
    year1 = load_run_config(path)  # read back over S3
    assert year1 == demo_run_config(world, labels=types, quick=True, out=s3.url("demo/run"))
    assert year1.inputs.params["root"] == str(tmp_path / "world")  # a local world stays absolute
    year2 = load_run_config(write_demo_year2_config(out, world, labels=types))
    assert (year2.out, year2.inputs.labels) == (s3.url("demo/run-year2"), types)
    # a run file on S3 takes its relative paths from its URL's folder
    fs = _s3fs_of(s3)
    fs.pipe_file(f"{s3.bucket}/demo/rel.yaml", b"inputs: {catalog: demo}\nout: runs/../run\n")
    assert load_run_config(s3.url("demo/rel.yaml")).out == s3.url("demo/run")
    local = write_demo_year2_config(str(tmp_path), world, labels=types)
    remote = read_bytes(s3.url("demo/run-year2.yaml"))
    assert remote == read_bytes(local).replace(
        str(tmp_path / "run-year2").encode(), s3.url("demo/run-year2").encode()
    )


def _s3fs_of(s3):
    import s3fs

    return s3fs.S3FileSystem(**s3.storage_options)


def test_demo_refuses_a_world_at_a_url_and_says_to_give_a_local_folder():
    res = CliRunner().invoke(main, ["demo", "--out", "s3://b/demo", "--world", "s3://b/w"])
    assert res.exit_code == 2
    assert "'s3://b/w': the demo world is written as local files; give a local folder" in (
        res.output
    )


def _json_on(fs, url):
    return json.loads(fs.cat_file(url))


@pytest.mark.slow
@pytest.mark.timeout(900)  # a whole demo in the call (and the local one's set-up, run alone)
def test_demo_writes_its_outputs_to_s3_equal_to_the_local_demo(demo_run, s3, monkeypatch):
    import xarray as xr

    out, _ = demo_run
    endpoint_url, storage_options = s3
    # Only the environment says where S3 is (the cluster's workers inherit it).
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint_url)
    url = s3.url("demo")
    # The world stays local: reuse the local demo's (same parameters) instead of a new one.
    args = ["demo", "--out", url, "--world", str(out / "world"), *ARGS]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert f"Demo world already in {out / 'world'} with these parameters; reusing it." in (
        res.output
    )
    assert f"oceanfields run {url}/run.yaml" in res.output
    assert "testing" not in res.output  # no credentials printed
    fs = _s3fs_of(s3)
    for run in ("run", "run-year2"):
        remote = _json_on(fs, f"{url}/{run}/metrics.json")
        local = json.loads((out / run / "metrics.json").read_text())
        assert remote == local, run
    fields = xr.open_zarr(
        f"{url}/run/fields.zarr", storage_options=storage_options, consolidated=False
    ).load()
    local_fields = xr.open_zarr(out / "run" / "fields.zarr", consolidated=False).load()
    xr.testing.assert_identical(fields.drop_attrs(), local_fields.drop_attrs())
    for entry in ("ecopart_detailed", "ecopart_raw", "ecotaxa"):
        remote = _json_on(fs, f"{url}/tables/{entry}/summary.json")
        local = json.loads((out / "tables" / entry / "summary.json").read_text())
        outputs = remote.pop("outputs")
        assert outputs["summary"] == f"{url}/tables/{entry}/summary.json"
        local.pop("outputs")  # local paths
        for summary in (remote, local):  # the work this run did (the local one resumed)
            summary.pop("batches_written")
        assert remote == local, entry
    made = _json_on(fs, f"{url}/images/summary.json")
    local_made = json.loads((out / "images" / "summary.json").read_text())
    assert made["labels"] == f"{url}/images/classified/labels"
    assert (made["ari"], made["classifier"]) == (local_made["ari"], local_made["classifier"])
    labels = pd.read_parquet(f"{url}/images/classified/labels", storage_options=storage_options)
    local_labels = pd.read_parquet(out / "images" / "classified" / "labels")
    key = ["object_id"]
    pd.testing.assert_frame_equal(
        labels.sort_values(key, ignore_index=True),
        local_labels.sort_values(key, ignore_index=True),
    )
    for name in ("types/plate.png", "model/weights.pt", "consistency/index.html"):
        assert fs.exists(f"{url}/images/{name}"), name
    assert not fs.exists(f"{url}/world")  # the world is local
