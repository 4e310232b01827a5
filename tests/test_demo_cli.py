"""`oceanfields demo` end to end on a small world, its outputs on S3, the world local.

One demo run is shared by the module, in three parts (``--until images``, ``--until
year1``, then the rest): ``oceanfields demo --out s3://… --world DIR`` against a moto S3
server on 127.0.0.1 (one bucket for the module, never reset), so every output goes
through the object store as on a cluster; only the environment says where S3 is (the
cluster's workers inherit it). Every catalog entry is read and reconciled, both chains
and the image path run, and each output is read back from S3.
The run files themselves are tested in ``tests/test_demo_config.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.cli.main import main

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
    # the simple world: the tour's mechanics; the realistic demo: test_demo_realistic.py
    "--world-kind",
    "simple",
]
BUCKET = "oceanfields-demo"


class Demo(NamedTuple):
    """The module's demo: its output URL, local world, printed output and S3 access."""

    url: str
    world: Path
    output: str
    storage_options: dict[str, Any]
    fs: Any

    def json(self, key: str) -> Any:
        return json.loads(self.fs.cat_file(f"{self.url}/{key}"))

    def parquet(self, key: str) -> pd.DataFrame:
        return pd.read_parquet(f"{self.url}/{key}", storage_options=self.storage_options)

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(f"{self.url}/{key}"))


def _tour(s3_server: str, demo: Demo, until: str) -> Demo:
    """Run ``oceanfields demo`` on the module's S3 output up to ``until``; add its output."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL", s3_server)  # set before the demo's cluster starts
        args = ["demo", "--out", demo.url, "--world", str(demo.world), *ARGS, "--until", until]
        res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    if until != "year2":
        assert f"Stopped after {until} (--until {until})" in res.output
    if until != "images":  # a later part goes on from the last: the images are not redone
        assert "Images: already done in" in res.output
    return demo._replace(output=demo.output + res.output)


# The tour runs in three parts (``--until``), each going on from the last, so that no
# test's set-up holds the whole tour (about 130 s beside another test file on 2 cores).
@pytest.fixture(scope="module")
def tour_images(s3_server, tmp_path_factory):
    """The tour up to the image path: world, every catalog entry read, images."""
    import boto3
    import s3fs

    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    s3fs.S3FileSystem.clear_instance_cache()
    storage_options = {"anon": False, "client_kwargs": {"endpoint_url": s3_server}}
    world = tmp_path_factory.mktemp("demo") / "world"
    empty = Demo(
        f"s3://{BUCKET}/demo", world, "", storage_options, s3fs.S3FileSystem(**storage_options)
    )
    return _tour(s3_server, empty, "images")


@pytest.fixture(scope="module")
def tour_year1(s3_server, tour_images):
    """The tour on to the year-1 chain."""
    return _tour(s3_server, tour_images, "year1")


@pytest.fixture(scope="module")
def demo_run(s3_server, tour_year1):
    """The whole tour (the year-2 chain last); ``output`` holds the three parts' output."""
    return _tour(s3_server, tour_year1, "year2")


def test_demo_reads_every_catalog_entry_through_the_readers(tour_images):
    demo_run = tour_images
    output = demo_run.output
    for entry in ("environment", "ecopart_detailed", "ecopart_raw", "ecotaxa", "truth_fields"):
        assert f"[{entry}]" in output
    assert "Dask dashboard: http://127.0.0.1:" in output
    assert "Stopped after images (--until images)" in output
    assert "12 file(s):" in output
    assert "variables: ['chl', 'deptho', 'mask', 'mlotst', 'o2', 'so', 'thetao', 'uo', 'vo']" in (
        output
    )
    for entry in ("ecopart_detailed", "ecopart_raw", "ecotaxa"):
        summary = demo_run.json(f"tables/{entry}/summary.json")
        assert summary["reconciles"], entry
        assert summary["rows_quarantined"] == 0, (entry, summary["by_reason"])
        assert summary["rows_accepted"] > 0
        assert summary["outputs"]["summary"] == f"{demo_run.url}/tables/{entry}/summary.json"


def test_demo_raw_and_detailed_exports_give_the_same_particles(tour_images):
    demo_run = tour_images
    keys = ["profile_id", "depth_m"]
    detailed = demo_run.parquet("tables/ecopart_detailed/particles.parquet")
    raw = demo_run.parquet("tables/ecopart_raw/particles.parquet")
    detailed = detailed.sort_values(keys, ignore_index=True)
    raw = raw.sort_values(keys, ignore_index=True)
    assert len(detailed) == len(raw) > 0
    pd.testing.assert_frame_equal(detailed, raw, check_exact=False, rtol=1e-9)


def test_demo_objects_match_the_truth_of_the_world(tour_images):
    demo_run = tour_images
    objects = demo_run.parquet("tables/ecotaxa/objects.parquet")
    world = json.loads((demo_run.world / "world.json").read_text())
    assert len(objects) == world["counts"]["objects_written"] == world["counts"]["images"]
    assert objects["image"].str.endswith(".png").all()
    assert objects["lat"].between(-90, 90).all()


def test_without_torch_the_demo_keeps_the_types_and_year2_counts_the_human_labels(
    tour_images, tmp_path, monkeypatch, capsys
):
    demo_run = tour_images
    import sys

    from pipeline.catalog import open_catalog, read_entry
    from pipeline.cli.demo import demo_images, write_demo_year2_config
    from pipeline.run.config import load_run_config

    (tmp_path / "world").symlink_to(demo_run.world)
    objects = read_entry(open_catalog("demo", root=str(demo_run.world)), "ecotaxa").accepted
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
        write_demo_year2_config(str(tmp_path), str(demo_run.world), labels=None, quick=True)
    )
    assert config.inputs.labels is None
    assert config.object_targets.labels == "annotated"
    assert [layer.name for layer in config.targets.layers] == ["0-200m"]
    assert config.split.n_folds == 3
    assert config.train.baselines == ("climatology",)


def test_demo_runs_the_year1_chain_and_prints_the_skill_table(tour_year1):
    demo_run = tour_year1
    output = demo_run.output
    for name in (
        "targets.parquet",
        "matchup.parquet",
        "model/model.ubj",
        "metrics.json",
        "fields.zarr/zarr.json",
        "report/index.html",
    ):
        assert demo_run.exists(f"run/{name}"), name
    assert "Skill (transformed space; MSE = mean over targets" in output
    metrics = demo_run.json("run/metrics.json")
    assert f"{metrics['model']['test']['mse']:.4f}" in output
    assert f"{metrics['model']['test']['mv_mse']:.3f}" in output
    assert "conc_type_1_per_l" in metrics["targets"]  # per-type targets from the EcoTaxa images
    assert len(demo_run.parquet("run/predictions.parquet")) > 0


def test_demo_runs_the_image_path_and_the_year2_chain(demo_run):
    made = demo_run.json("images/summary.json")
    assert f"adjusted Rand index against the world's true particle types: {made['ari']:.3f}" in (
        demo_run.output
    )
    assert made["ari"] > 0.8  # the morphological types recover the world's particle types
    assert made["labels"] == f"{demo_run.url}/images/classified/labels"
    names = (
        "types/labels/part-0.parquet",
        "types/plate.png",
        "model/model.json",
        "model/metrics.json",
        "model/weights.pt",
        "classified/manifest.json",
        "consistency/index.html",
    )
    for name in names:
        assert demo_run.exists(f"images/{name}"), name
    labels = demo_run.parquet("images/classified/labels")
    objects = demo_run.parquet("tables/ecotaxa/objects.parquet")
    assert sorted(labels["object_id"]) == sorted(objects["object_id"])
    year1 = demo_run.json("run/metrics.json")
    assert {"conc_type_1_per_l", "conc_type_4_per_l"} <= set(year1["targets"])
    year2 = demo_run.json("run-year2/metrics.json")
    groups = {f"conc_{g}_per_l" for g in ("Copepoda", "Rhizaria", "Chaetognatha")}
    assert groups <= set(year2["targets"])
    targets2 = demo_run.parquet("run-year2/targets.parquet")
    assert set(targets2["layer"]) == {"0-200m"}
    # the objects the classifier left unassigned (below their class threshold): counted
    share = demo_run.json("run-year2/_state/targets.json")["counts"]["objects_unassigned_share"]
    assert 0 <= share < 0.5
    assert f"unassigned (machine labels below their class threshold): {share:.1%}" in (
        demo_run.output
    )
    assert (share > 0) <= (labels["label"] == "unassigned").any()


def test_demo_keeps_the_world_local_and_prints_no_credentials(demo_run):
    assert (demo_run.world / "world.json").exists()
    assert not demo_run.exists("world")
    assert f"oceanfields run {demo_run.url}/run.yaml" in demo_run.output
    assert "testing" not in demo_run.output  # the dummy credentials of the environment


def test_demo_reuses_an_existing_world_and_its_finished_work(demo_run):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL", demo_run.storage_options["client_kwargs"]["endpoint_url"])
        args = ["demo", "--out", demo_run.url, "--world", str(demo_run.world), *ARGS]
        res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert f"Demo world already in {demo_run.world} with these parameters; reusing it." in (
        res.output
    )
    assert "Images: already done in" in res.output
    for step in ("targets", "matchup", "train", "fields", "report"):
        assert f"[{step}] already done with these inputs; skipped." in res.output


def test_demo_refuses_a_world_at_a_url_and_says_to_give_a_local_folder():
    res = CliRunner().invoke(main, ["demo", "--out", "s3://b/demo", "--world", "s3://b/w"])
    assert res.exit_code == 2
    assert "'s3://b/w': the demo world is written as local files; give a local folder" in (
        res.output
    )
