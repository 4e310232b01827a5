"""EcoPart reader on broken inputs: every bad row quarantined with a reason, counts reconcile."""

from __future__ import annotations

import gzip
import itertools
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import sizeclasses
from pipeline.errors import InputFormatError
from pipeline.sources.ecopart_export import read_par_export
from pipeline.sources.ecopart_raw import read_par_raw
from pipeline.sources.ecopart_summary import read_metadata_summary

EDGES = sizeclasses.edges_mm("detailed")
LABELS = [sizeclasses.export_label(lo, hi) for lo, hi in itertools.pairwise(EDGES)]
HEADER = ["Profile", "Rawfilename", "yyyy-mm-dd hh:mm", "Depth [m]", "Sampled volume [L]"]
SUMMARY_HEADER = "profile\tInstrument\tyyyy-mm-dd hh:mm\tLatitude \tLongitude\taa\texp\tPixel size"
RAW_SUMMARY_HEADER = (
    "psampleid\tprofileid\tlatitude\tlongitude\torganizedbydeepth\tsampledate\tacq_aa\t"
    "acq_exp\tacq_volimage\tacq_pixel\tdefault_depthoffset\tinstrumtype\tParticle filename"
)


def _row(profile="p1", depth=2.5, volume=2.0, conc=None, raw="HDR1"):
    conc = conc if conc is not None else {20: 1.5, 21: 0.5}  # 3 and 1 particles in 2 L
    values = ["0.0"] * 45
    for k, v in conc.items():
        values[k] = str(v)
    return [profile, raw, "2019-11-21 01:00:00", str(depth), str(volume), *values]


def _write_par(
    folder: Path,
    rows,
    *,
    name="export_detailed_20210201_11_31_PAR_p1.tsv",
    header=None,
    encoding="latin-1",
    cut_last=0,
) -> Path:
    header = header or HEADER + LABELS
    lines = ["\t".join(header)] + ["\t".join(r) for r in rows]
    data = ("\r\n".join(lines) + "\r\n").encode(encoding)
    if cut_last:
        data = data[:-cut_last]
    path = folder / name
    path.write_bytes(data)
    return path


def _write_summary(folder: Path, rows=None, *, name="export_detailed_20210201_11_31"):
    rows = (
        rows
        if rows is not None
        else [
            ["p1", "uvp5", "2019-11-21 01:00:00", "44.09", "7.57", "0.0002", "1.02", "0.088"],
            ["p2", "uvp5", "2019-11-21 02:00:00", "44.09", "7.57", "0.0002", "1.02", "0.088"],
        ]
    )
    text = "\r\n".join([SUMMARY_HEADER] + ["\t".join(r) for r in rows]) + "\r\n"
    path = folder / f"{name}_Export_metadata_summary.tsv"
    path.write_bytes(text.encode("latin-1"))
    return path


def _read(path: Path, **kwargs):
    acc, quar, stats = read_par_export(str(path), **kwargs).compute()
    assert (stats["rows_read"] == stats["rows_accepted"] + stats["rows_quarantined"]).all()
    return acc, quar, stats


@pytest.fixture
def export_dir(tmp_path):
    _write_summary(tmp_path)
    return tmp_path


# ------------------------------------------------------------------- row problems


@pytest.mark.parametrize(
    ("bad_row", "column", "reason"),
    [
        (_row(depth="abc"), "Depth [m]", "not a number: 'abc'"),
        (_row(depth=""), "Depth [m]", "missing depth"),
        (_row(depth=-2.5), "Depth [m]", "negative depth '-2.5'"),
        (_row(depth=8.1), "Depth [m]", "depth '8.1' is not a 5 m bin centre"),
        (_row(volume=0), "Sampled volume [L]", "sampled volume '0' is not > 0"),
        (_row(volume=-1.1), "Sampled volume [L]", "sampled volume '-1.1' is not > 0"),
        (_row(volume="x"), "Sampled volume [L]", "not a number: 'x'"),
        (_row(conc={20: "lots"}), LABELS[20], "not a number: 'lots'"),
        (_row(conc={20: -1}), LABELS[20], "negative concentration '-1'"),
        (_row(profile="nowhere"), "Profile", "'nowhere' is not in the metadata summary"),
        (_row(profile=""), "Profile", "empty profile id"),
        (_row(depth=2.5, volume=3.0), "Depth [m]", "duplicate of line 2 (same depth bin)"),
    ],
    ids=[
        "text-depth",
        "empty-depth",
        "negative-depth",
        "off-bin-depth",
        "zero-volume",
        "negative-volume",
        "text-volume",
        "text-concentration",
        "negative-concentration",
        "profile-not-in-summary",
        "empty-profile",
        "duplicate-bin",
    ],
)
def test_bad_row_is_quarantined_with_column_and_reason_and_good_rows_kept(
    export_dir, bad_row, column, reason
):
    good = [_row(depth=2.5), _row(depth=12.5)]
    path = _write_par(export_dir, [good[0], bad_row, good[1]])
    acc, quar, stats = _read(path)
    assert acc["depth_m"].tolist() == [2.5, 12.5]
    assert acc["n_102_128um"].tolist() == [3.0, 3.0]
    assert acc["n_128_161um"].tolist() == [1.0, 1.0]
    assert len(quar) == 1
    row = quar.iloc[0]
    assert (row["line"], row["column"]) == (3, column)
    assert reason in row["reason"]
    assert row["raw"] == "\t".join(bad_row)
    assert stats[["rows_read", "rows_accepted", "rows_quarantined"]].iloc[0].tolist() == [3, 2, 1]


def test_duplicate_depth_bin_keeps_the_first_row(export_dir):
    path = _write_par(export_dir, [_row(depth=7.5), _row(depth=7.5, volume=3.0)])
    acc, quar, _ = _read(path)
    assert acc["volume_l"].tolist() == [2.0]
    assert quar["reason"].tolist() == ["profile 'p1': duplicate of line 2 (same depth bin)"]


def test_concentration_times_volume_off_integer_is_kept_as_float(export_dir):
    path = _write_par(export_dir, [_row(conc={20: 1.2345}, volume=1.0)])
    acc, _, _ = _read(path)
    assert acc["n_102_128um"].tolist() == [1.2345]


@pytest.mark.parametrize(
    ("fields", "found"),
    [(lambda r: [*r, "extra"], 51), (lambda r: r[:-3], 47)],
    ids=["too-many-fields", "too-few-fields"],
)
def test_row_with_wrong_field_count_is_quarantined(export_dir, fields, found):
    path = _write_par(export_dir, [_row(), fields(_row(depth=7.5)), _row(depth=12.5)])
    acc, quar, _ = _read(path)
    assert len(acc) == 2
    assert quar["reason"].tolist() == [f"expected 50 fields (as in the header), found {found}"]


def test_truncated_last_line_is_quarantined_and_the_rest_kept(export_dir):
    path = _write_par(export_dir, [_row(), _row(depth=7.5), _row(depth=12.5)], cut_last=150)
    acc, quar, _ = _read(path)
    assert acc["depth_m"].tolist() == [2.5, 7.5]
    assert quar["line"].tolist() == [4]
    assert quar["reason"].str.startswith("expected 50 fields").all()


def test_missing_volume_column_quarantines_every_row_naming_it(export_dir):
    header = [h for h in HEADER + LABELS if h != "Sampled volume [L]"]
    rows = [[c for i, c in enumerate(_row(depth=d)) if i != 4] for d in (2.5, 7.5)]
    acc, quar, stats = _read(_write_par(export_dir, rows, header=header))
    assert len(acc) == 0
    assert quar["column"].tolist() == ["Sampled volume [L]"] * 2
    assert (
        quar["reason"]
        .str.contains(
            r"required column 'Sampled volume \[L\]' is missing; columns found: 'Profile'"
        )
        .all()
    )
    assert stats["rows_quarantined"].item() == 2


def test_lower_case_profile_column_is_read(export_dir):
    header = ["profile", *HEADER[1:], *LABELS]
    acc, quar, _ = _read(_write_par(export_dir, [_row()], header=header))
    assert acc["profile_id"].tolist() == ["p1"]
    assert len(quar) == 0


def test_a_zoo_file_is_refused_as_a_whole_naming_what_is_read(export_dir):
    path = _write_par(
        export_dir,
        [["p1", "x", "y"]],
        header=["Profile", "Depth [m]", "Copepoda"],
        name="export_detailed_20210201_11_31_PAR_zoo.tsv",
    )
    acc, quar, _ = _read(path)
    assert len(acc) == 0
    assert quar["line"].tolist() == [0]
    assert "no complete set of 'LPM (...) [# l-1]' class columns" in quar["reason"].item()


# --------------------------------------------------------------- encodings, files


def test_strict_utf8_on_a_latin1_file_quarantines_the_file_with_the_fix(export_dir):
    path = _write_par(export_dir, [_row()])
    acc, quar, _ = _read(path, encoding="utf-8")
    assert len(acc) == 0
    assert "header is not valid utf-8" in quar["reason"].item()
    assert "encoding='latin-1'" in quar["reason"].item()


def test_strict_utf8_quarantines_only_the_undecodable_line(export_dir):
    path = _write_par(
        export_dir, [_row(), _row(depth=7.5, raw="HDR\xe9"), _row(depth=12.5)], encoding="utf-8"
    )
    data = path.read_bytes().replace("HDRé".encode(), b"HDR\xe9")  # one stray latin-1 byte
    path.write_bytes(data)
    acc, quar, _ = _read(path, encoding="utf-8")
    assert acc["depth_m"].tolist() == [2.5, 12.5]
    assert quar["line"].tolist() == [3]
    assert quar["reason"].str.startswith("undecodable bytes (utf-8)").all()
    acc, quar, _ = _read(path)  # default: detected (latin-1 here), every row kept
    assert acc["depth_m"].tolist() == [2.5, 7.5, 12.5]


def test_empty_file_becomes_one_file_level_quarantine_row(export_dir):
    path = export_dir / "export_detailed_20210201_11_31_PAR_p1.tsv"
    path.write_bytes(b"")
    acc, quar, stats = _read(path)
    assert len(acc) == 0
    assert quar[["line", "reason"]].iloc[0].tolist() == [
        0,
        f"{path}: the file is empty (no header line).",
    ]
    assert stats["rows_read"].item() == 0


def test_truncated_gz_file_is_quarantined_not_raised(export_dir):
    plain = _write_par(export_dir, [_row(depth=2.5 + 5 * k) for k in range(200)])
    packed = gzip.compress(plain.read_bytes())
    gz = export_dir / "export_detailed_20210201_11_31_PAR_p1.tsv.gz"
    gz.write_bytes(packed[: len(packed) // 2])
    acc, quar, _ = _read(gz)
    assert len(acc) == 0
    assert quar["line"].tolist() == [0]
    assert "truncated or corrupt compressed file" in quar["reason"].item()


# ---------------------------------------------------------------- metadata summary


@pytest.mark.parametrize(
    ("summary_row", "column", "reason"),
    [
        (
            ["p1", "uvp5", "2019-13-45 01:00", "44.09", "7.57", "0.0002", "1.02", "0.088"],
            "yyyy-mm-dd hh:mm",
            "unparseable date: '2019-13-45 01:00'",
        ),
        (
            ["p1", "uvp5", "", "44.09", "7.57", "0.0002", "1.02", "0.088"],
            "yyyy-mm-dd hh:mm",
            "unparseable date: ''",
        ),
        (
            ["p1", "uvp5", "2019-11-21 01:00", "91", "7.57", "0.0002", "1.02", "0.088"],
            "Latitude",
            "latitude 91.0 is out of [-90, 90]",
        ),
        (
            ["p1", "uvp5", "2019-11-21 01:00", "44", "-181", "0.0002", "1.02", "0.088"],
            "Longitude",
            "longitude -181.0 is out of [-180, 360)",
        ),
        (
            ["p1", "uvp5", "2019-11-21 01:00", "N44", "7.57", "0.0002", "1.02", "0.088"],
            "Latitude",
            "not a number: 'N44'",
        ),
    ],
    ids=["bad-date", "empty-date", "lat-out-of-range", "lon-out-of-range", "text-lat"],
)
def test_bad_summary_row_is_quarantined_and_its_profile_rows_say_why(
    tmp_path, summary_row, column, reason
):
    summary = _write_summary(tmp_path, [summary_row])
    res = read_metadata_summary(str(summary))
    assert len(res.accepted) == 0
    assert res.quarantine[["line", "column"]].iloc[0].tolist() == [2, column]
    assert res.quarantine["reason"].item().startswith(f"profile 'p1': {reason}")
    acc, quar, _ = _read(_write_par(tmp_path, [_row(), _row(depth=7.5)]))
    assert len(acc) == 0
    assert (
        quar["reason"]
        .str.contains("profile 'p1' has no valid metadata \\(metadata summary .*:2: profile 'p1': ")
        .all()
    )


def test_summary_longitudes_in_0_360_are_wrapped_to_minus_180_180(tmp_path):
    row = ["p1", "uvp5", "2019-11-21 01:00", "44", "300.5", "0.0002", "1.02", "0.088"]
    res = read_metadata_summary(str(_write_summary(tmp_path, [row])))
    assert res.accepted["lon"].tolist() == [-59.5]


def test_summary_without_latitude_raises_naming_file_column_and_columns_found(tmp_path):
    path = tmp_path / "x_Export_metadata_summary.tsv"
    path.write_bytes(b"profile\tLongitude\tyyyy-mm-dd hh:mm\r\np1\t7\t2019-01-01\r\n")
    with pytest.raises(
        InputFormatError,
        match=r"x_Export_metadata_summary.tsv:1: .*no column "
        r"'Latitude'; columns found: 'profile', 'Longitude'",
    ):
        read_metadata_summary(str(path))


def test_a_file_that_is_no_summary_is_refused(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_bytes(b"a\tb\r\n1\t2\r\n")
    with pytest.raises(InputFormatError, match=r"not an EcoPart metadata summary"):
        read_metadata_summary(str(path))


def test_duplicate_profile_in_summary_keeps_the_first(tmp_path):
    row = ["p1", "uvp5", "2019-11-21 01:00", "44", "7", "0.0002", "1.02", "0.088"]
    res = read_metadata_summary(str(_write_summary(tmp_path, [row, row])))
    assert len(res.accepted) == 1
    assert res.quarantine["reason"].tolist() == ["duplicate profile id 'p1'"]


# ---------------------------------------------------------------------------- raw


def _raw_dir(tmp_path, lines, *, organised="True", volimage="1.1", header=None):
    summary = "\t".join(
        [
            "1",
            '"castA"',
            "32.1",
            "-64.5",
            organised,
            "2019-07-14 20:38:48",
            "0.00279",
            "1.2236",
            volimage,
            "0.092",
            "1.2",
            '"uvp5"',
            "20190714203848_castA_PAR_raw_20220810_16_31.tsv",
        ]
    )
    (tmp_path / "export_raw_20220810_16_31_Export_metadata_summary.tsv").write_text(
        RAW_SUMMARY_HEADER + "\r\n" + summary + "\r\n", encoding="latin-1"
    )
    header = header or "depth\timgcount\tarea\tnbr\tgreylimit1\tgreylimit2\tgreylimit3"
    path = tmp_path / "20190714203848_castA_PAR_raw_20220810_16_31.tsv"
    path.write_text(header + "\n" + "\n".join(lines) + "\n")
    return path


def _read_raw(path, **kwargs):
    acc, quar, stats = read_par_raw(str(path), **kwargs).compute()
    assert (stats["rows_read"] == stats["rows_accepted"] + stats["rows_quarantined"]).all()
    return acc, quar, stats


def test_raw_bins_volumes_over_distinct_metres_and_counts_by_esd(tmp_path, caplog):
    lines = [
        "2\t20\t6\t5\t1\t2\t3",
        "2\t20\t40\t1\t1\t2\t3",
        "3\t25\t6\t2\t1\t2\t3",
        "7\t30\t6\t4\t1\t2\t3",
    ]
    with caplog.at_level(logging.DEBUG, logger="pipeline.sources"):
        acc, _quar, stats = _read_raw(_raw_dir(tmp_path, lines))
    assert acc["depth_m"].tolist() == [2.5, 7.5]
    assert acc["volume_l"].tolist() == pytest.approx([(20 + 25) * 1.1, 30 * 1.1])
    esd6 = sizeclasses.esd_mm_from_area(np.array([6.0, 40.0]), 0.00279, 1.2236)
    cls = sizeclasses.class_for_esd(esd6, EDGES)
    cols = acc.columns[7:]
    assert acc.loc[0, cols[cls[0]]] == 7
    assert acc.loc[0, cols[cls[1]]] == 1
    assert acc.loc[1, cols[cls[0]]] == 4
    assert acc[cols].sum().sum() == 12
    assert (acc["profile_id"] == "castA").all()
    assert stats["rows_accepted"].item() == 4


def test_raw_areas_below_the_first_class_are_dropped_and_logged(tmp_path, caplog):
    path = _raw_dir(tmp_path, ["2\t20\t6\t5\t1\t2\t3", "2\t20\t1\t9\t1\t2\t3"])
    summary = tmp_path / "export_raw_20220810_16_31_Export_metadata_summary.tsv"
    # aa = 1e-10: areas of 1 and 6 px are below 1 µm, the first class edge.
    summary.write_text(summary.read_text().replace("0.00279", "0.0000000001"), encoding="latin-1")
    with caplog.at_level(logging.DEBUG, logger="pipeline.sources"):
        acc, _, stats = _read_raw(path)
    assert acc.iloc[:, 7:].sum().sum() == 0
    assert acc["volume_l"].tolist() == [22.0]  # the lines still count for the volume
    assert stats["rows_accepted"].item() == 2
    assert "below the first class edge" in caplog.text


@pytest.mark.parametrize(
    ("bad", "column", "reason"),
    [
        ("3\tabc\t6\t1\t1\t2\t3", "imgcount", "not a number: 'abc'"),
        ("3\t0\t6\t1\t1\t2\t3", "imgcount", "image count '0' is not > 0"),
        ("3\t20\t0\t1\t1\t2\t3", "area", "area '0' px is not > 0"),
        ("3\t20\t6\t-1\t1\t2\t3", "nbr", "negative particle count '-1'"),
        ("-3\t20\t6\t1\t1\t2\t3", "depth", "negative depth '-3'"),
        ("2\t21\t7\t1\t1\t2\t3", "imgcount", "imgcount 21 differs from line 2's (20) for metre 2"),
        ("2\t20\t6\t1\t1\t2\t3", "area", "duplicate of line 2 (same metre and area)"),
        ("2\t20\t9", "", "expected 7 fields (as in the header), found 3"),
    ],
    ids=[
        "text",
        "zero-images",
        "zero-area",
        "negative-nbr",
        "negative-depth",
        "imgcount-differs",
        "duplicate-area",
        "too-few-fields",
    ],
)
def test_raw_bad_line_is_quarantined_and_the_bins_built_from_the_rest(
    tmp_path, bad, column, reason
):
    acc, quar, stats = _read_raw(_raw_dir(tmp_path, ["2\t20\t6\t5\t1\t2\t3", bad]))
    assert acc["volume_l"].tolist() == pytest.approx([22.0])
    assert acc.iloc[:, 7:].sum().sum() == 5
    assert quar[["line", "column"]].iloc[0].tolist() == [3, column]
    assert reason in quar["reason"].item()
    assert stats[["rows_read", "rows_accepted", "rows_quarantined"]].iloc[0].tolist() == [2, 1, 1]


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"organised": "False"}, "time-organised sample"),
        ({"volimage": ""}, "acq_volimage is nan in the metadata summary"),
        (
            {"header": "depth\timgcount\tsurface\tnbr\tgreylimit1\tgreylimit2\tgreylimit3"},
            "required column 'area' is missing",
        ),
    ],
    ids=["time-organised", "no-volimage", "no-area-column"],
)
def test_raw_file_level_problems_quarantine_every_line(tmp_path, kwargs, reason):
    acc, quar, _stats = _read_raw(_raw_dir(tmp_path, ["2\t20\t6\t5\t1\t2\t3"] * 1, **kwargs))
    assert len(acc) == 0
    assert quar["line"].tolist() == [2]
    assert reason in quar["reason"].item()


def test_raw_file_of_an_unknown_profile_is_quarantined(tmp_path):
    _raw_dir(tmp_path, ["2\t20\t6\t5\t1\t2\t3"])
    other = tmp_path / "20190714203848_castB_PAR_raw_20220810_16_31.tsv"
    other.write_text("depth\timgcount\tarea\tnbr\n2\t20\t6\t5\n")
    acc, quar, _ = _read_raw(other)
    assert len(acc) == 0
    assert "'castB' is not in the metadata summary" in quar["reason"].item()


# --------------------------------------------------------------------- invariant


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    n_rows=st.integers(min_value=0, max_value=12),
    corruptions=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=11),
            st.sampled_from(
                [
                    "text-depth",
                    "cut",
                    "extra",
                    "zero-volume",
                    "dup",
                    "bytes",
                    "profile",
                    "blank-conc",
                    "neg",
                ]
            ),
        ),
        max_size=6,
    ),
    encoding=st.sampled_from([None, "utf-8"]),
)
def test_counts_reconcile_and_no_line_is_lost_under_random_corruption(
    tmp_path_factory, n_rows, corruptions, encoding
):
    folder = tmp_path_factory.mktemp("h")
    _write_summary(folder)
    rows = [_row(depth=2.5 + 5 * k) for k in range(n_rows)]
    lines = ["\t".join(r).encode("latin-1") for r in rows]
    for at, kind in corruptions:
        if at >= len(lines):
            continue
        fields = lines[at].split(b"\t")
        if len(fields) < 27 and kind != "extra":
            continue  # a line already cut short has no such field left to corrupt
        if kind == "text-depth":
            fields[3] = b"abc"
        elif kind == "cut":
            fields = fields[: len(fields) // 2]
        elif kind == "extra":
            fields.append(b"1")
        elif kind == "zero-volume":
            fields[4] = b"0"
        elif kind == "dup":
            fields[3] = b"2.5"
        elif kind == "bytes":
            fields[1] = b"HDR\xe9\xff"
        elif kind == "profile":
            fields[0] = b"ghost"
        elif kind == "blank-conc":
            fields[25] = b""
        elif kind == "neg":
            fields[26] = b"-3"
        lines[at] = b"\t".join(fields)
    header = "\t".join(HEADER + LABELS).encode("latin-1")
    path = folder / "export_detailed_20210201_11_31_PAR_p1.tsv"
    path.write_bytes(b"\r\n".join([header, *lines]) + b"\r\n")
    acc, quar, stats = read_par_export(str(path), encoding=encoding).compute()
    assert (stats["rows_read"] == stats["rows_accepted"] + stats["rows_quarantined"]).all()
    if encoding == "utf-8":  # the header's µ is latin-1: the whole file is refused
        assert quar["line"].tolist() == [0]
        assert len(acc) == 0
        return
    assert stats["rows_read"].item() == n_rows
    assert len(acc) + len(quar) == n_rows  # each data line accepted or quarantined once
    assert not quar["line"].duplicated().any()
    assert acc["depth_m"].is_unique
    assert (acc["volume_l"] > 0).all()
    assert pd.api.types.is_float_dtype(acc["n_102_128um"])
