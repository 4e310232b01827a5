"""The oceanfields command: ingest real files, reconcile counts, clear errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.cli.main import main


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


def test_ingest_ecopart_writes_particles_quarantine_and_reconciled_summary(
    runner, shared_data, tmp_path
):
    files = str(shared_data / "ecopart_qa" / "tsv_det_multi" / "*_PAR_*.tsv")
    out = tmp_path / "ing"
    res = runner.invoke(main, ["ingest", "ecopart", files, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "3 file(s): 606 rows read = 600 accepted + 6 quarantined" in res.output
    particles = pd.read_parquet(out / "particles.parquet")
    assert len(particles) == 600
    assert set(particles["profile_id"]) == {"brusample01", "uvpappsample01"}
    assert particles["volume_l"].gt(0).all()
    quarantine = pd.read_parquet(out / "quarantine.parquet")
    assert len(quarantine) == 6
    assert quarantine["file"].str.endswith("PAR_uvpappsampleT1.tsv").all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reconciles"] is True
    assert summary["extents"]["depth_m"] == ["2.5", "1497.5"]
    assert summary["extents"]["lat"] == ["44.0905", "44.0905"]
    assert summary["rows_read"] == summary["rows_accepted"] + summary["rows_quarantined"]


def test_ingest_ecotaxa_reports_reasons_and_keeps_every_row(runner, shared_data, tmp_path):
    files = str(shared_data / "ecotaxa_back" / "zooscan_import_tot_vol" / "*" / "*.tsv")
    out = tmp_path / "ing"
    res = runner.invoke(main, ["ingest", "ecotaxa", files, "--out", str(out), "--require-images"])
    assert res.exit_code == 0, res.output
    objects = pd.read_parquet(out / "objects.parquet")
    quarantine = pd.read_parquet(out / "quarantine.parquet")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows_read"] == len(objects) + len(quarantine) == 9
    assert "referenced image not found" in res.output


def test_ingest_ecotaxa_reads_a_tsv_exported_without_images_by_default(
    runner, shared_data, tmp_path
):
    files = str(shared_data / "ecotaxar_tara_zooscan" / "export.tsv")
    out = tmp_path / "ing"
    res = runner.invoke(main, ["ingest", "ecotaxa", files, "--out", str(out)])
    assert res.exit_code == 0, res.output
    objects = pd.read_parquet(out / "objects.parquet")
    assert len(objects) == 99
    assert objects["image"].eq("").all()
    assert objects["esd_um"].notna().all()


def test_ingest_names_a_pattern_that_matches_nothing(runner, tmp_path):
    res = runner.invoke(main, ["ingest", "ecopart", str(tmp_path / "*.tsv"), "--out", "x"])
    assert res.exit_code != 0
    assert "matches no file" in res.output
    assert "Traceback" not in res.output


def test_ingest_refuses_a_file_kind_it_cannot_read(runner, shared_data, tmp_path):
    zoo = shared_data / "ecopart_qa" / "tsv_det_multi"
    files = str(zoo / "export_detailed_20210201_11_31_ZOO_brusample01.tsv")
    res = runner.invoke(main, ["ingest", "ecopart", files, "--out", str(tmp_path)])
    assert res.exit_code != 0
    assert "ZOO_brusample01.tsv" in res.output


def test_ingest_reads_and_writes_s3_with_storage_options_from_the_environment(
    runner, shared_data, s3, monkeypatch
):
    import fsspec

    endpoint_url, storage_options = s3
    fs = fsspec.filesystem("s3", **storage_options)
    src = shared_data / "ecopart_qa" / "tsv_det_multi"
    for name in (
        "export_detailed_20210201_11_31_PAR_brusample01.tsv",
        "export_detailed_20210201_11_31_Export_metadata_summary.tsv",
    ):
        fs.put(str(src / name), f"{s3.bucket}/in/{name}")
    # Only the environment says where S3 is: nothing in the command line or the outputs.
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint_url)
    res = runner.invoke(
        main, ["ingest", "ecopart", s3.url("in/*_PAR_*.tsv"), "--out", s3.url("run")]
    )
    assert res.exit_code == 0, res.output
    assert "1 file(s): 300 rows read = 300 accepted + 0 quarantined" in res.output
    particles = pd.read_parquet(s3.url("run/particles.parquet"), storage_options=storage_options)
    assert len(particles) == 300
    assert particles["volume_l"].eq(1.13).all()
    summary = json.loads(fs.cat(f"{s3.bucket}/run/summary.json"))
    assert summary["outputs"]["particles"] == s3.url("run/particles.parquet")
    assert "testing" not in res.output + json.dumps(summary)


@pytest.mark.parametrize("name", ["demo", "ecotaxa", "ecopart", "copernicus"])
def test_catalog_list_prints_every_entry_of_each_shipped_catalog(runner, name):
    from pipeline.catalog import list_entries, open_catalog

    res = runner.invoke(main, ["catalog", "list", name])
    assert res.exit_code == 0, res.output
    names = [e["name"] for e in list_entries(open_catalog(name))]
    assert [line.split()[0] for line in res.output.splitlines()] == names


def test_catalog_show_prints_description_and_parameters_of_one_entry(runner):
    res = runner.invoke(main, ["catalog", "show", "ecopart", "par_raw"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("par_raw  (reader: ecopart_raw)")
    assert "parameter size_classes (default 'detailed')" in res.output


def test_catalog_show_opens_environment_entries_and_shows_grid_depth_and_time_kind(
    runner, shared_data
):
    folder = shared_data / "copernicus_like" / "monthly_1deg_climatologies"
    res = runner.invoke(main, ["catalog", "show", "climatologies", "--param", f"folder={folder}"])
    assert res.exit_code == 0, res.output
    blocks = {b.split()[0]: b for b in res.output.strip().split("\n\n")}
    diatoms = blocks["diatoms_cmems"]
    assert "grid: lat -89.5..89.5 step 1 (180), lon -179.5..179.5 step 1 (360)" in diatoms
    assert "time: climatology (12 steps, months 1..12 in the time values)" in diatoms
    assert "depth: none (2-D)" in diatoms
    assert "not opened: InputFormatError" in blocks["local_folder"]  # no file given
    assert "(remote: not opened" in blocks["woa23"]
    copernicus = runner.invoke(main, ["catalog", "show", "copernicus", "glo_oc_l4_my_monthly"])
    assert "OCEANCOLOUR_GLO_BGC_L4_MY_009_104" in copernicus.output
    assert "not opened: ConfigError" in copernicus.output
    assert "parameter 'bucket' is required" in copernicus.output


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["catalog", "show", "demo", "nope"], "no entry 'nope'; entries: environment"),
        (["catalog", "list", "nothere"], "no catalog named 'nothere'"),
    ],
    ids=["unknown-entry", "unknown-catalog"],
)
def test_catalog_errors_name_what_is_valid(runner, args, match):
    res = runner.invoke(main, args)
    assert res.exit_code != 0
    assert match in res.output
    assert "Traceback" not in res.output


def test_the_cli_imports_no_heavy_library_before_a_command_needs_it():
    # dask's worker processes start by re-importing the console script's main module
    # (multiprocessing "spawn"): each heavy import here is paid again by every worker
    # of `oceanfields demo` / `run` at cluster start (it was 4 s a worker, 14 s a start)
    import subprocess
    import sys

    heavy = ("xgboost", "torch", "matplotlib", "dask.dataframe", "sklearn", "zarr")
    code = (
        f"import sys, pipeline.cli.main; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "", f"imported at CLI start: {out.stdout.strip()}"
