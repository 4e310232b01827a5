"""PAR exports read a batch at once (one read_csv per header): the tables of file by file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.sources import ecopart_clean
from pipeline.sources.ecopart_export import read_par_export
from pipeline.sources.table import ReadResult
from tests.bulk_reads import (
    assert_same,
    bulk_done,
    bulk_done_after_pickling,
    file_by_file,
    same_three_ways,
)

DET = "ecopart_qa/tsv_det_multi"
STAMP = "export_detailed_20210201_11_31"
CLEAN = ("brusample01", "uvpappsample01")
N_ROWS = 300  # data lines of each of the two clean profiles


def _edit(data: bytes, line: int, column: str, value: bytes) -> bytes:
    """Set one cell (1-based line, column by header name) of a PAR export."""
    lines = data.split(b"\r\n")
    at = lines[0].decode("latin-1").split("\t").index(column)
    fields = lines[line - 1].split(b"\t")
    fields[at] = value
    lines[line - 1] = b"\t".join(fields)
    return b"\r\n".join(lines)


def _move_column(data: bytes, column: str) -> bytes:
    """Move a column to the end of every line (another header, the same table)."""
    lines = data.split(b"\r\n")
    at = lines[0].decode("latin-1").split("\t").index(column)
    out = []
    for line in lines:
        fields = line.split(b"\t")
        out.append(
            b"\t".join(fields[:at] + fields[at + 1 :] + fields[at : at + 1]) if line else b""
        )
    return b"\r\n".join(out)


@pytest.fixture(scope="module")
def exports(shared_data, tmp_path_factory):
    """Copies of the two clean QA profiles under many names, dirty copies, other headers."""
    folder = tmp_path_factory.mktemp("batch")
    src = shared_data / DET
    summary = folder / f"{STAMP}_Export_metadata_summary.tsv"
    summary.write_bytes((src / summary.name).read_bytes())
    par = {p: (src / f"{STAMP}_PAR_{p}.tsv").read_bytes() for p in (*CLEAN, "uvpappsampleT1")}

    def write(name: str, data: bytes) -> str:
        path = folder / f"{STAMP}_PAR_{name}.tsv"
        path.write_bytes(data)
        return str(path)

    files = {f"clean{i}": write(f"clean{i}", par[CLEAN[i % 2]]) for i in range(8)}
    files["text"] = write("text", _edit(par[CLEAN[0]], 5, "LPM (80.6-102 \xb5m) [# l-1]", b"lots"))
    files["negative"] = write("negative", _edit(par[CLEAN[1]], 7, "Sampled volume [L]", b"-1.5"))
    files["timed"] = write("timed", par["uvpappsampleT1"])
    files["moved"] = write("moved", _move_column(par[CLEAN[0]], "Sampled volume [L]"))
    files["header_only"] = write("header_only", par[CLEAN[0]].split(b"\r\n")[0] + b"\r\n")
    head, rest = par[CLEAN[1]].split(b"\r\n", 1)  # empty lines after the header and at the end
    files["blank_lines"] = write("blank_lines", head + b"\r\n\r\n" + rest + b"\r\n\n")
    files["utf8"] = write(  # the same header, "µ" in UTF-8: other header bytes
        "utf8", par[CLEAN[1]].decode("latin-1").encode("utf-8")
    )
    return summary, files


def _read(summary, files, names) -> ReadResult:
    res = read_par_export([files[n] for n in names], metadata_url=str(summary))
    assert res.accepted.npartitions == 1  # one batch
    return res


def test_a_batch_with_dirty_files_gives_the_file_by_file_tables_and_quarantine(
    exports, monkeypatch
):
    summary, files = exports
    names = ["clean0", "clean1", "text", "clean2", "negative", "clean3", "timed", "clean4"]
    res = _read(summary, files, names)
    # the clean files are read at once; the dirty ones (found by halving the read) are not
    assert bulk_done(res) == [n.startswith("clean") for n in names]
    got = res.compute()
    assert_same(got, file_by_file(res).compute())
    monkeypatch.setattr(ecopart_clean, "_FAST_PATHS", False)  # the careful path only
    assert_same(got, _read(summary, files, names).compute())
    accepted, quarantine, stats = got
    where = quarantine.set_index(quarantine["file"].str.extract(r"PAR_(\w+)\.tsv")[0])
    assert where.loc["text", ["line", "column"]].tolist() == [5, "LPM (80.6-102 µm) [# l-1]"]
    assert "not a number: 'lots'" in where.loc["text", "reason"]
    assert where.loc["negative", ["line", "column"]].tolist() == [7, "Sampled volume [L]"]
    assert stats["rows_read"].tolist() == [N_ROWS] * 6 + [6, N_ROWS]
    assert (stats["rows_read"] == stats["rows_accepted"] + stats["rows_quarantined"]).all()
    assert len(accepted) == 7 * N_ROWS - 2
    first = accepted.groupby("profile_id", sort=False).size()  # files in their order
    assert list(first.index) == ["brusample01", "uvpappsample01"]


def test_files_with_other_headers_or_no_row_in_one_batch_are_read_at_once_in_file_order(exports):
    summary, files = exports
    names = ["clean0", "moved", "clean1", "header_only", "utf8", "clean2", "blank_lines"]
    res = _read(summary, files, names)
    assert bulk_done(res) == [True] * len(names)  # three headers, three reads
    got = res.compute()
    assert_same(got, file_by_file(res).compute())
    accepted, _, stats = got
    assert stats["rows_read"].tolist() == [N_ROWS] * 3 + [0] + [N_ROWS] * 3
    profiles = accepted["profile_id"].to_numpy()[::N_ROWS].tolist()
    assert profiles == [CLEAN[0], CLEAN[0], CLEAN[1], CLEAN[1], CLEAN[0], CLEAN[1]]
    same = accepted.iloc[:N_ROWS].reset_index(drop=True)
    pd.testing.assert_frame_equal(same, accepted.iloc[N_ROWS : 2 * N_ROWS].reset_index(drop=True))


def test_the_bulk_parser_survives_pickling_with_its_batch(exports):
    summary, files = exports
    res = _read(summary, files, ["clean0", "text", "clean1"])
    assert bulk_done_after_pickling(res) == [True, False, True]


@pytest.mark.parametrize(
    ("folder", "done"),
    [
        ("ecopart_qa/tsv_det_multi", [True, True, False]),  # the third is time-organised
        ("ecopart_qa/tsv_reduit_multi", [True]),
        ("ecopart_qa/tsvagg_det_multi", [False]),  # one time-organised sample in it
    ],
    ids=["detailed", "reduced", "aggregated"],
)
def test_real_exports_give_the_same_tables_read_at_once_file_by_file_or_carefully(
    shared_data, monkeypatch, folder, done
):
    res = read_par_export(str(shared_data / folder / "*_PAR_*.tsv"))
    assert bulk_done(res) == done
    got = same_three_ways(res, monkeypatch)
    assert np.isfinite(got[0]["depth_m"]).all()
