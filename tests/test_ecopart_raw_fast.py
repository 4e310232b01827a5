"""Raw PAR exports binned a batch at once (one read_csv per header): the careful tables."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from pipeline.sources.ecopart_raw import read_par_raw
from pipeline.sources.table import ReadResult
from tests.bulk_reads import bulk_done, bulk_done_after_pickling, same_three_ways

BATS = "ecotaxatools_bats361_uvp5"
RAW = "ecopart_qa/raw_multi"
STAMP = "20220810_16_31"
SUMMARY = f"export_raw_{STAMP}_Export_metadata_summary.tsv"
#: Real casts: ctd1 (17 k lines, deepest first then from the surface), ctd5 (16 k lines).
CASTS = {"ctd1": "20190714130948_bats361_ctd1", "ctd5": "20190714203848_bats361_ctd5"}


def _edit_line(data: bytes, line: int, edit) -> bytes:
    """Apply ``edit(fields) -> fields or None`` (None: drop) to a 1-based line, CR kept."""
    lines = data.split(b"\n")
    text = lines[line - 1]
    cr = text.endswith(b"\r")
    fields = edit(text.rstrip(b"\r").split(b"\t"))
    if fields is None:
        del lines[line - 1]
    else:
        lines[line - 1] = b"\t".join(fields) + (b"\r" if cr else b"")
    return b"\n".join(lines)


def _set(data: bytes, line: int, column: str, value: bytes) -> bytes:
    at = data.split(b"\n", 1)[0].rstrip(b"\r").decode().split("\t").index(column)
    return _edit_line(data, line, lambda f: [*f[:at], value, *f[at + 1 :]])


def _drop_column(data: bytes, column: str) -> bytes:
    at = data.split(b"\n", 1)[0].rstrip(b"\r").decode().split("\t").index(column)
    return b"\n".join(
        b"\t".join(f[:at] + f[at + 1 :]) if (f := line.split(b"\t")) != [b""] else line
        for line in data.split(b"\n")
    )


def _repeat_line(data: bytes, line: int) -> bytes:
    lines = data.split(b"\n")
    return b"\n".join([*lines[:line], lines[line - 1], *lines[line:]])


@pytest.fixture(scope="module")
def exports(shared_data, tmp_path_factory):
    """BATS casts under many names (the profile is the name's tail), and dirty copies."""
    folder = tmp_path_factory.mktemp("raw_fast")
    shutil.copy(shared_data / BATS / SUMMARY, folder / SUMMARY)
    par = {
        cast: (shared_data / BATS / f"{stem}_PAR_raw_{STAMP}.tsv").read_bytes()
        for cast, stem in CASTS.items()
    }

    def write(tag: str, cast: str, data: bytes) -> str:
        path = folder / f"{tag}_bats361_{cast}_PAR_raw_{STAMP}.tsv"
        path.write_bytes(data)
        return str(path)

    one, five = par["ctd1"], par["ctd5"]
    files = {
        f"clean{i}": write(f"clean{i}", ("ctd1", "ctd5")[i % 2], (one, five)[i % 2])
        for i in range(6)
    }
    files["text"] = write("text", "ctd1", _set(one, 40, "nbr", b"lots"))
    files["negative"] = write("negative", "ctd5", _set(five, 7, "depth", b"-3"))
    files["duplicate"] = write("duplicate", "ctd1", _repeat_line(one, 100))
    files["imgcount"] = write("imgcount", "ctd5", _set(five, 9, "imgcount", b"9999"))
    files["no_column"] = write("no_column", "ctd1", _drop_column(one, "imgcount"))
    files["truncated"] = write("truncated", "ctd5", _edit_line(five, 12, lambda f: f[:3]))
    shifted = _edit_line(five, 2, lambda f: [*f, b"1"])  # the tabs of the file still add up
    files["shifted"] = write("shifted", "ctd5", _edit_line(shifted, 30, lambda f: f[:-1]))
    files["empty_cell"] = write("empty_cell", "ctd1", _set(one, 20, "area", b""))
    # not plain integers, accepted by the careful path: "5.0" is read at once, "5.5" is not
    files["whole"] = write("whole", "ctd5", _edit_line(five, 3, lambda f: [*f[:2], b"5.0", *f[3:]]))
    files["fraction"] = write(
        "fraction", "ctd5", _edit_line(five, 3, lambda f: [*f[:2], b"5.5", *f[3:]])
    )
    files["crlf"] = write("crlf", "ctd1", one.replace(b"\n", b"\r\n"))
    files["header_only"] = write("header_only", "ctd5", five.split(b"\n", 1)[0] + b"\n")
    head, rest = five.split(b"\n", 1)  # blank lines after the header and at the end
    files["blank_lines"] = write("blank_lines", "ctd5", head + b"\n\n" + rest + b"\n\n")
    files["unknown"] = write("unknown", "ctd99", one)
    return folder / SUMMARY, files


def _read(summary, files, names, **options) -> ReadResult:
    res = read_par_raw([files[n] for n in names], metadata_url=str(summary), **options)
    assert res.accepted.npartitions == 1  # one batch
    return res


DIRTY = {  # name: (line, column, reason) of its first quarantine row
    "text": (40, "nbr", "not a number: 'lots'"),
    "negative": (7, "depth", "negative depth '-3'"),
    "duplicate": (101, "area", "duplicate of line 100 (same metre and area)"),
    "imgcount": (9, "imgcount", "imgcount 9999 differs from line"),
    "no_column": (2, "imgcount", "required column 'imgcount' is missing"),
    "truncated": (12, "", "expected 7 fields (as in the header), found 3"),
    "empty_cell": (20, "area", "missing area"),
    "shifted": (2, "", "expected 7 fields (as in the header), found 8"),
}


def test_a_batch_of_clean_and_dirty_raw_files_gives_the_careful_tables(exports, monkeypatch):
    summary, files = exports
    names = [
        "clean0", "text", "clean1", "negative", "duplicate", "clean2", "imgcount", "no_column",
        "clean3", "truncated", "empty_cell", "whole", "fraction", "unknown", "shifted", "clean4",
    ]  # fmt: skip
    res = _read(summary, files, names)
    # the clean files are binned at once; the others (some found by halving) are not
    assert bulk_done(res) == [n.startswith("clean") or n == "whole" for n in names]
    got = same_three_ways(res, monkeypatch)
    accepted, quarantine, stats = got
    first = quarantine.drop_duplicates("file").set_index(
        quarantine["file"].drop_duplicates().str.extract(r"/(\w+?)_bats")[0]
    )
    for name, (line, column, reason) in DIRTY.items():
        assert first.loc[name, ["line", "column"]].tolist() == [line, column], name
        assert reason in first.loc[name, "reason"], name
    assert first.loc["unknown", "line"] == 2
    assert "ctd99" in first.loc["unknown", "reason"]
    assert "whole" not in first.index
    assert "fraction" not in first.index
    assert (stats["rows_read"] == stats["rows_accepted"] + stats["rows_quarantined"]).all()
    clean = stats[stats["file"].str.contains("/clean")]
    assert (clean["rows_accepted"] == clean["rows_read"]).all()
    assert clean["rows_read"].tolist() == [17385, 15830] * 2 + [17385]
    assert accepted["depth_m"].min() == 2.5
    assert (accepted["volume_l"] > 0).all()


def test_raw_files_with_other_line_ends_blank_lines_or_no_line_are_binned_at_once(
    exports, monkeypatch
):
    summary, files = exports
    names = ["clean0", "crlf", "header_only", "clean1", "blank_lines"]
    res = _read(summary, files, names)
    assert bulk_done(res) == [True] * len(names)  # two headers (LF, CRLF), two reads
    got = same_three_ways(res, monkeypatch)
    accepted, quarantine, stats = got
    assert len(quarantine) == 0
    assert stats["rows_read"].tolist() == [17385, 17385, 0, 15830, 15830]
    n = int((accepted["profile_id"] == "bats361_ctd1").sum()) // 2  # clean0, then crlf
    crlf = accepted.iloc[n : 2 * n].reset_index(drop=True)
    pd.testing.assert_frame_equal(crlf, accepted.iloc[:n], check_exact=True)


@pytest.mark.parametrize(
    ("options", "n_classes"),
    [({}, 45), ({"size_classes": "reduced", "bin_m": 10.0}, 15), ({"bin_m": 1.0}, 45)],
    ids=["detailed-5m", "reduced-10m", "detailed-1m"],
)
def test_class_sets_and_bin_heights_give_the_careful_tables(
    exports, monkeypatch, options, n_classes
):
    summary, files = exports
    res = _read(summary, files, ["clean0", "clean1", "fraction"], **options)
    assert bulk_done_after_pickling(res) == [True, True, False]  # as sent to a worker
    got = same_three_ways(res, monkeypatch)
    assert len(got[0].columns) == 7 + n_classes
    assert np.allclose(np.diff(np.unique(got[0]["depth_m"]))[:3], options.get("bin_m", 5.0))


@pytest.mark.parametrize(
    ("folder", "done"),
    [
        # ctd18 (header and one line), ctd4 (110 k lines, to 3,499 m): all clean
        (BATS, [True] * 6),
        # a UVP5 and a UVP6 file (another header, a datetime column)
        (RAW, [True, True]),
    ],
    ids=["bats361", "qa_raw_multi"],
)
def test_real_raw_exports_give_the_same_tables_at_once_file_by_file_or_carefully(
    shared_data, monkeypatch, folder, done
):
    res = read_par_raw(str(shared_data / folder / "*_PAR_raw_*.tsv"))
    assert bulk_done(res) == done
    got = same_three_ways(res, monkeypatch)
    assert len(got[0]) > 0
    assert len(got[1]) == 0
