"""Archives as exported: folders, globs, zips of zips and s3 prefixes read whole, never fatal."""

from __future__ import annotations

import json
import shutil
import zipfile

import dask
import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.cli.main import main
from pipeline.errors import InputFormatError
from pipeline.sources import ecopart_clean, table
from pipeline.sources.archive import ArchiveFile, list_files
from pipeline.sources.ecopart import read_ecopart, read_par_export, read_par_raw

RAW = "ecopart_qa/raw_multi"
BATS = "ecotaxatools_bats361_uvp5"
DET = "ecopart_qa/tsv_det_multi"
BATS_CASTS = {f"bats361_ctd{n}" for n in (1, 4, 5, 14, 18, 26)}


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


# ----------------------------------------------------------------------------- listing


def test_list_files_walks_folders_and_zips_of_zips_and_skips_hidden_files(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.tsv").write_bytes(b"12345")
    (tmp_path / ".DS_Store").write_bytes(b"x")
    inner = tmp_path / "inner.zip"
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("deep/b.tsv", b"abc")
    with zipfile.ZipFile(tmp_path / "outer.zip", "w") as z:
        z.write(inner, "inner.zip")
        z.writestr("c.txt", b"hello!")
        z.writestr("__MACOSX/._c.txt", b"junk")
    inner.unlink()
    found = {f.name: f for f in list_files(str(tmp_path))}
    assert sorted(found) == ["a.tsv", "b.tsv", "c.txt"]
    assert found["b.tsv"].url == f"zip://deep/b.tsv::zip://inner.zip::{tmp_path / 'outer.zip'}"
    assert (found["a.tsv"].size, found["b.tsv"].size, found["c.txt"].size) == (5, 3, 6)
    assert all(f.expanded for f in found.values())
    # what a zip member holds is read through the chained URL
    from pipeline.io import read_bytes

    assert read_bytes(found["b.tsv"].url) == b"abc"


def test_list_files_keeps_a_named_file_as_given_and_refuses_an_empty_pattern(tmp_path):
    (tmp_path / "x.tsv").write_bytes(b"1")
    named = list_files([str(tmp_path / "x.tsv"), str(tmp_path / "missing.tsv")])
    assert named == [
        ArchiveFile(str(tmp_path / "x.tsv"), 1),
        ArchiveFile(str(tmp_path / "missing.tsv"), None),
    ]
    with pytest.raises(InputFormatError, match=r"\*\.zip: the pattern matches no file"):
        list_files(str(tmp_path / "*.zip"))


# --------------------------------------------------------------------- exports as exported


@pytest.mark.parametrize(
    ("folder", "profiles", "rows", "not_read"),
    [
        (
            RAW,
            {"brusample01", "uvpappsample01"},
            600,
            {
                "ZOO export (not read by this reader)": 1,
                "CTD export (not read by this reader)": 1,
                "unknown (unknown: not read)": 4,
                "metadata summary (metadata summary: used)": 1,
            },
        ),
        (
            BATS,
            BATS_CASTS,
            1052,
            {
                "ZOO export (not read by this reader)": 4,
                "unknown (unknown: not read)": 1,
                "metadata summary (metadata summary: used)": 1,
            },
        ),
    ],
    ids=["qa-raw-multi", "bats-real"],
)
def test_ingest_ecopart_folder_as_exported_reads_every_par_profile_and_lists_the_rest(
    runner, shared_data, tmp_path, folder, profiles, rows, not_read
):
    out = tmp_path / "ing"
    res = runner.invoke(main, ["ingest", "ecopart", str(shared_data / folder), "--out", str(out)])
    assert res.exit_code == 0, res.output
    particles = pd.read_parquet(out / "particles.parquet")
    assert set(particles["profile_id"]) == profiles
    assert len(particles) == rows
    summary = json.loads((out / "summary.json").read_text())
    assert summary["not_read"] == not_read
    assert summary["reconciles"] is True
    assert "ZOO export (not read by this reader)" in res.output
    inventory = pd.read_parquet(out / "inventory.parquet")
    zoo = inventory[inventory["kind"] == "ZOO export"]
    assert zoo["file"].str.contains("_ZOO_raw_").all()
    assert len(zoo) == not_read["ZOO export (not read by this reader)"]
    # the same table as the raw reader on the PAR files named one by one
    named = sorted(str(p) for p in (shared_data / folder).glob("*_PAR_raw_*.tsv"))
    expected = read_par_raw(named).accepted.compute()
    pd.testing.assert_frame_equal(
        particles.sort_values(["profile_id", "depth_m"], ignore_index=True),
        expected.sort_values(["profile_id", "depth_m"], ignore_index=True),
        check_dtype=False,
    )


def test_read_ecopart_reads_a_zip_of_zips_holding_two_exports_each_with_its_summary(
    shared_data, tmp_path
):
    inner = tmp_path / "qa_export.zip"
    with zipfile.ZipFile(inner, "w") as z:
        for path in sorted((shared_data / RAW).iterdir()):
            z.write(path, f"raw_multi/{path.name}")
    outer = tmp_path / "archive.zip"
    with zipfile.ZipFile(outer, "w") as z:
        z.write(inner, "qa_export.zip")
        for path in sorted((shared_data / BATS).iterdir()):
            z.write(path, f"bats/{path.name}")
    res = read_ecopart(str(outer))
    accepted, quarantine, stats = dask.compute(res.accepted, res.quarantine, res.stats)
    assert set(accepted["profile_id"]) == BATS_CASTS | {"brusample01", "uvpappsample01"}
    assert len(accepted) == 600 + 1052
    assert len(quarantine) == 0
    assert len(stats) == 2 + 6
    used = res.inventory[res.inventory["action"] == "metadata summary: used"]["file"]
    assert len(used) == 2  # each export with its own summary
    lpm = res.inventory[res.inventory["file"].str.contains("lambdasample01_rawfiles.zip")]
    assert set(lpm["action"]) == {"unknown: not read"}  # a zip inside a zip inside the zip
    assert len(lpm) == 4


def test_read_ecopart_reads_an_s3_prefix_as_exported(shared_data, s3):
    import fsspec

    _, storage_options = s3
    fs = fsspec.filesystem("s3", **storage_options)
    for path in sorted((shared_data / RAW).iterdir()):
        fs.put(str(path), f"{s3.bucket}/exports/raw_multi/{path.name}")
    res = read_ecopart(s3.url("exports/raw_multi"), storage_options=storage_options)
    accepted = res.accepted.compute()
    assert len(accepted) == 600
    assert set(accepted["profile_id"]) == {"brusample01", "uvpappsample01"}
    kinds = res.inventory.set_index("kind")["action"]
    assert kinds["ZOO export"] == kinds["CTD export"] == "not read by this reader"
    assert res.inventory["file"].str.startswith(("s3://", "zip://")).all()
    assert res.inventory["size_bytes"].notna().all()


def test_read_ecopart_with_nothing_to_read_names_each_file_and_its_kind(shared_data, tmp_path):
    for name in ("20191121020000_brusample02_CTD_raw_20210201_14_15.tsv",):
        shutil.copy(shared_data / RAW / name, tmp_path / name)
    (tmp_path / "notes.md").write_text("hi")
    with pytest.raises(InputFormatError, match=r"no PAR file among the 2 file\(s\).*CTD export"):
        read_ecopart(str(tmp_path))


# ------------------------------------------------------------------------- fast paths


def _without_fast_paths(monkeypatch):
    monkeypatch.setattr(ecopart_clean, "_FAST_PATHS", False)
    monkeypatch.setattr(table, "_tokenize_fast", lambda *a, **k: None)
    monkeypatch.setattr(table, "_to_float_fast", lambda *a, **k: None)


@pytest.mark.parametrize(
    "read",
    [
        lambda d: read_par_export(str(d / DET / "*_PAR_*.tsv")),
        lambda d: read_par_raw(str(d / BATS)),
        lambda d: read_par_raw(str(d / RAW)),
    ],
    ids=["detailed-qa", "raw-bats", "raw-qa"],
)
def test_fast_paths_give_exactly_the_careful_paths_tables(shared_data, monkeypatch, read):
    fast = read(shared_data).compute()
    _without_fast_paths(monkeypatch)
    careful = read(shared_data).compute()
    for got, want in zip(fast, careful, strict=True):
        pd.testing.assert_frame_equal(
            got.reset_index(drop=True), want.reset_index(drop=True), check_exact=True
        )
    assert len(fast[0]) > 0


def test_a_catalog_entry_may_name_an_export_folder_or_a_glob_of_everything(shared_data, tmp_path):
    from pipeline.catalog import open_catalog, read_entry

    doc = {
        "metadata": {"version": 1},
        "sources": {
            name: {
                "driver": "csv",
                "args": {"urlpath": url},
                "metadata": {"oceanfields": {"reader": "ecopart_raw"}},
            }
            for name, url in (
                ("folder", str(shared_data / BATS)),
                ("glob", str(shared_data / RAW / "*")),
            )
        },
    }
    path = tmp_path / "cat.yaml"
    path.write_text(json.dumps(doc))
    catalog = open_catalog(str(path))
    folder = read_entry(catalog, "folder")
    assert set(folder.accepted.compute()["profile_id"]) == BATS_CASTS
    assert (folder.inventory["kind"] == "ZOO export").sum() == 4
    glob = read_entry(catalog, "glob")
    assert len(glob.accepted.compute()) == 600
    assert set(glob.inventory.loc[glob.inventory["action"] == "read", "kind"]) == {"raw PAR export"}
