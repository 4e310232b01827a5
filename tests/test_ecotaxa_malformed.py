"""The EcoTaxa reader on malformed input: every bad row quarantined, every good row kept."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import dask
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.sources.ecotaxa import read_ecotaxa

HEADER = (
    "object_id",
    "object_lat",
    "object_lon",
    "object_date",
    "object_time",
    "object_depth_min",
    "object_depth_max",
    "object_annotation_status",
    "object_annotation_category",
    "object_area",
    "sample_id",
    "sample_tot_vol",
    "acq_sub_part",
)
GOOD = {
    "object_id": "o1",
    "object_lat": "43.5",
    "object_lon": "7.25",
    "object_date": "20200205",
    "object_time": "111823",
    "object_depth_min": "10",
    "object_depth_max": "20",
    "object_annotation_status": "validated",
    "object_annotation_category": "Copepoda",
    "object_area": "207",
    "sample_id": "s1",
    "sample_tot_vol": "2",
    "acq_sub_part": "4",
}


def _row(**changes: str) -> dict[str, str]:
    return {**GOOD, **changes}


def _write(path: Path, rows: list[dict[str, str]], header=HEADER, type_row=False) -> str:
    lines = ["\t".join(header)]
    if type_row:
        lines.append("\t".join("[t]" for _ in header))
    lines += ["\t".join(r.get(h, "") for h in header) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _read(url, **options):
    options.setdefault("check_images", False)
    with dask.config.set(scheduler="sync"):
        accepted, quarantine, stats = read_ecotaxa(url, **options).compute()
    assert (stats["rows_read"] == stats["rows_accepted"] + stats["rows_quarantined"]).all()
    return accepted, quarantine, stats


def _one_bad(tmp_path, **changes):
    """Read a file with one good row (line 2) and one changed row (line 3)."""
    url = _write(tmp_path / "ecotaxa_x.tsv", [_row(), _row(**{"object_id": "o2", **changes})])
    accepted, quarantine, _ = _read(url)
    assert accepted["object_id"].tolist() == ["o1"]
    assert quarantine["line"].tolist() == [3]
    return quarantine.iloc[0]


# --- whole-file problems -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("drop", "column", "reason"),
    [
        (("object_id",), "object_id", "missing required column 'object_id'"),
        (("object_date",), "object_date", "missing required column 'object_date'"),
        (("object_lat",), "object_lat", "no latitude column: need object_lat or sample_lat"),
        (
            ("object_lon",),
            "object_lon",
            "no longitude column: need object_lon or sample_long or sample_lon",
        ),
    ],
    ids=["object_id", "object_date", "latitude", "longitude"],
)
def test_missing_required_column_quarantines_every_row_naming_it(tmp_path, drop, column, reason):
    header = [h for h in HEADER if h not in drop]
    url = _write(tmp_path / "ecotaxa_x.tsv", [_row(), _row(object_id="o2")], header=header)
    accepted, quarantine, stats = _read(url)
    assert len(accepted) == 0
    assert quarantine["line"].tolist() == [2, 3]
    assert (quarantine["column"] == column).all()
    assert quarantine["reason"].str.startswith(reason).all()
    assert stats["rows_quarantined"].tolist() == [2]


def test_empty_file_is_one_file_level_quarantine_row(tmp_path):
    path = tmp_path / "ecotaxa_empty.tsv"
    path.write_bytes(b"")
    accepted, quarantine, stats = _read(str(path))
    assert len(accepted) == 0
    assert quarantine[["line", "column"]].values.tolist() == [[0, ""]]
    assert "the file is empty (no header line)" in quarantine["reason"].iloc[0]
    assert stats["rows_read"].tolist() == [0]


def test_header_only_file_reads_nothing_and_refuses_nothing(tmp_path):
    accepted, quarantine, stats = _read(_write(tmp_path / "ecotaxa_x.tsv", [], type_row=True))
    assert (len(accepted), len(quarantine), stats["rows_read"].iloc[0]) == (0, 0, 0)


def test_truncated_gzip_is_a_file_level_quarantine_row_naming_the_fix(tmp_path):
    data = gzip.compress(Path(_write(tmp_path / "a.tsv", [_row()] * 50)).read_bytes())
    path = tmp_path / "ecotaxa_cut.tsv.gz"
    path.write_bytes(data[: len(data) // 2])
    _, quarantine, _ = _read(str(path))
    assert quarantine["line"].tolist() == [0]
    assert "truncated or corrupt compressed file" in quarantine["reason"].iloc[0]


def test_corrupt_zip_is_a_file_level_quarantine_row(tmp_path):
    path = tmp_path / "broken.zip"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    _, quarantine, _ = _read(f"zip://ecotaxa_x.tsv::{path}")
    assert quarantine["line"].tolist() == [0]
    assert quarantine["reason"].iloc[0].startswith(f"zip://ecotaxa_x.tsv::{path}: ")


def test_truncated_last_line_is_quarantined_and_earlier_rows_kept(tmp_path):
    path = Path(_write(tmp_path / "ecotaxa_x.tsv", [_row(), _row(object_id="o2")]))
    path.write_bytes(path.read_bytes()[:-30])
    accepted, quarantine, _ = _read(str(path))
    assert accepted["object_id"].tolist() == ["o1"]
    assert quarantine["line"].tolist() == [3]
    assert quarantine["reason"].iloc[0].startswith("expected 13 fields (as in the header), found")


@pytest.mark.parametrize(
    ("tail", "found"), [("\textra", 14), ("", 12)], ids=["too-many", "too-few"]
)
def test_rows_with_the_wrong_number_of_fields_are_quarantined(tmp_path, tail, found):
    path = Path(_write(tmp_path / "ecotaxa_x.tsv", [_row()]))
    cells = [GOOD[h] for h in HEADER]
    bad = "\t".join(cells[:-1] if not tail else cells) + tail
    path.write_text(path.read_text() + bad + "\n")
    accepted, quarantine, _ = _read(str(path))
    assert len(accepted) == 1
    assert quarantine["reason"].tolist() == [
        f"expected 13 fields (as in the header), found {found}"
    ]


def test_latin1_bytes_under_explicit_utf8_are_quarantined_per_line(tmp_path):
    path = Path(_write(tmp_path / "ecotaxa_x.tsv", [_row()]))
    bad = "\t".join(_row(object_id="o2", object_lat="43°0 0")[h] for h in HEADER)
    path.write_bytes(path.read_bytes() + bad.encode("latin-1") + b"\n")
    accepted, quarantine, _ = _read(str(path), encoding="utf-8")
    assert accepted["object_id"].tolist() == ["o1"]
    assert quarantine["reason"].iloc[0].startswith("undecodable bytes (utf-8): b'\\xb0")
    accepted, quarantine, _ = _read(str(path))  # automatic: the whole file is latin-1
    assert accepted["lat"].tolist() == [43.5, 43.0]


def test_utf8_byte_order_mark_does_not_hide_the_first_column(tmp_path):
    path = Path(_write(tmp_path / "ecotaxa_x.tsv", [_row()]))
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    accepted, quarantine, _ = _read(str(path))
    assert accepted["object_id"].tolist() == ["o1"]
    assert len(quarantine) == 0


# --- row problems --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "column", "reason"),
    [
        ({"object_id": ""}, "object_id", "empty object_id"),
        ({"object_date": "20141345"}, "object_date", "object_date '20141345' is not a date"),
        ({"object_date": "yesterday"}, "object_date", "object_date 'yesterday' is not a date"),
        ({"object_date": ""}, "object_date", "empty object_date"),
        ({"object_time": "25:61"}, "object_time", "object_time '25:61' is not a time"),
        ({"object_lat": "95"}, "object_lat", "latitude 95.0 is outside [-90, 90]"),
        ({"object_lat": "north"}, "object_lat", "object_lat 'north' is not a latitude"),
        ({"object_lat": "999999"}, "object_lat", "no latitude: object_lat is empty"),
        ({"object_lon": "400"}, "object_lon", "longitude 400.0 is outside [-180, 360]"),
        (
            {"object_depth_min": "30"},
            "object_depth_min",
            "object_depth_min 30.0 exceeds object_depth_max 20.0",
        ),
        ({"object_depth_max": "deep"}, "object_depth_max", "object_depth_max 'deep' is not"),
        (
            {"object_annotation_status": "maybe"},
            "object_annotation_status",
            "object_annotation_status 'maybe' is not one of predicted, validated, dubious",
        ),
        ({"sample_tot_vol": "-2"}, "sample_tot_vol", "sample_tot_vol -2 m³: the sampled"),
        ({"sample_tot_vol": "0"}, "sample_tot_vol", "sample_tot_vol 0 m³: the sampled volume"),
        ({"sample_tot_vol": "lots"}, "sample_tot_vol", "sample_tot_vol 'lots' is not a volume"),
        ({"acq_sub_part": "0"}, "acq_sub_part", "acq_sub_part 0 must be positive"),
        ({"object_area": "big"}, "object_area", "object_area 'big' is not a number"),
    ],
    ids=[
        "empty-id",
        "impossible-date",
        "text-date",
        "empty-date",
        "bad-time",
        "lat-out-of-range",
        "lat-text",
        "lat-sentinel",
        "lon-out-of-range",
        "depth-min-above-max",
        "depth-text",
        "unknown-status",
        "negative-volume",
        "zero-volume",
        "volume-text",
        "zero-sub-part",
        "feature-text",
    ],
)
def test_bad_cell_quarantines_its_row_naming_column_and_value(tmp_path, changes, column, reason):
    row = _one_bad(tmp_path, **changes)
    assert row["column"] == column
    assert row["reason"].startswith(reason), row["reason"]
    assert row["raw"].startswith("o2\t") or changes == {"object_id": ""}


def test_duplicate_object_ids_are_quarantined_naming_the_first_line(tmp_path):
    rows = [_row(), _row(object_id="o2"), _row(), _row(object_lat="10")]
    accepted, quarantine, _ = _read(_write(tmp_path / "ecotaxa_x.tsv", rows))
    assert accepted["object_id"].tolist() == ["o1", "o2"]
    assert quarantine["line"].tolist() == [4, 5]
    assert (quarantine["reason"] == "duplicate object_id 'o1': first at line 2").all()


def test_extra_images_of_one_object_keep_the_lowest_rank(tmp_path):
    header = (*HEADER, "img_file_name", "img_rank")
    rows = [
        _row(img_file_name="b.png", img_rank="1"),
        _row(img_file_name="a.png", img_rank="0"),
        _row(img_file_name="c.png", img_rank="1"),  # same rank again: a duplicate
        _row(img_file_name="d.png", img_rank="2", object_depth_min="15"),  # another object
    ]
    accepted, quarantine, _ = _read(_write(tmp_path / "ecotaxa_x.tsv", rows, header=header))
    assert accepted["image"].tolist() == [str(tmp_path / "a.png")]
    assert quarantine[["line", "column"]].values.tolist() == [
        [2, "img_rank"],
        [4, "object_id"],
        [5, "object_id"],
    ]
    assert quarantine["reason"].iloc[0].startswith("extra image (img_rank 1) of object 'o1'")
    assert quarantine["reason"].iloc[1] == "duplicate object_id 'o1': first at line 3"


@pytest.mark.parametrize(
    "name",
    ["../../etc/passwd", "/etc/passwd", "images/../../secret.png", "s3://other/x.png"],
    ids=["climbs-out", "absolute", "climbs-out-late", "protocol"],
)
def test_image_path_escaping_the_tsv_folder_is_quarantined_naming_it(tmp_path, name):
    header = (*HEADER, "img_file_name")
    rows = [_row(img_file_name=""), _row(object_id="o2", img_file_name=name)]
    accepted, quarantine, _ = _read(
        _write(tmp_path / "ecotaxa_x.tsv", rows, header=header), check_images=True
    )
    assert accepted["image"].tolist() == [""]
    assert quarantine["column"].tolist() == ["img_file_name"]
    assert quarantine["reason"].iloc[0].startswith(f"img_file_name {name!r} escapes the TSV's")


def test_missing_image_is_quarantined_and_present_one_resolved(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"png")
    header = (*HEADER, "img_file_name")
    rows = [_row(img_file_name="images/a.png"), _row(object_id="o2", img_file_name="images/b.png")]
    accepted, quarantine, _ = _read(
        _write(tmp_path / "ecotaxa_x.tsv", rows, header=header), check_images=True
    )
    assert accepted["image"].tolist() == [str(tmp_path / "images" / "a.png")]
    assert quarantine["reason"].tolist() == [
        f"referenced image not found: {tmp_path / 'images' / 'b.png'}"
    ]


# --- conversions that are not errors --------------------------------------------------------


def test_status_words_and_letters_map_to_p_v_d_or_empty(tmp_path):
    statuses = ["predicted", "Validated", "DUBIOUS", "P", "v", "", "unclassified"]
    rows = [_row(object_id=f"o{i}", object_annotation_status=s) for i, s in enumerate(statuses)]
    accepted, _, _ = _read(_write(tmp_path / "ecotaxa_x.tsv", rows))
    assert accepted["status"].tolist() == ["P", "V", "D", "P", "V", "", ""]


def test_volume_is_tot_vol_in_litres_over_sub_part_and_nan_when_absent(tmp_path):
    rows = [
        _row(object_id="a"),
        _row(object_id="b", acq_sub_part=""),
        _row(object_id="c", sample_tot_vol="999999"),
        _row(object_id="d", sample_tot_vol=""),
    ]
    accepted, _, _ = _read(_write(tmp_path / "ecotaxa_x.tsv", rows))
    assert accepted["volume_l"].tolist()[:2] == [500.0, 2000.0]
    assert accepted["volume_l"].iloc[2:].isna().all()


def test_times_follow_ecotaxas_hhmm_padding_and_accept_colons(tmp_path):
    times = ["420", "5", "1234", "12345", "111823", "11:18:23", "", "020139.315"]
    rows = [_row(object_id=f"o{i}", object_time=t) for i, t in enumerate(times)]
    accepted, _, _ = _read(_write(tmp_path / "ecotaxa_x.tsv", rows))
    assert accepted["time"].dt.strftime("%H:%M:%S.%f").str[:12].tolist() == [
        "04:20:00.000",
        "00:05:00.000",
        "12:34:00.000",
        "12:34:50.000",
        "11:18:23.000",
        "11:18:23.000",
        "00:00:00.000",
        "02:01:39.315",
    ]
    assert str(accepted["time"].dtype) == "datetime64[ns, UTC]"


def test_longitudes_above_180_wrap_and_features_keep_9999(tmp_path):
    rows = [_row(object_lon="190", object_area="9999"), _row(object_id="o2", object_lon="180")]
    accepted, _, _ = _read(_write(tmp_path / "ecotaxa_x.tsv", rows))
    assert accepted["lon"].tolist() == [-170.0, -180.0]
    assert accepted["area"].tolist()[0] == 9999.0


def test_one_missing_depth_takes_the_other(tmp_path):
    rows = [_row(object_depth_max=""), _row(object_id="o2", object_depth_min="")]
    accepted, _, _ = _read(_write(tmp_path / "ecotaxa_x.tsv", rows))
    assert accepted[["depth_min_m", "depth_max_m"]].values.tolist() == [[10, 10], [20, 20]]


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        ({"acq_pixel": "0.092", "acq_instrument": "uvp5hd"}, 92.0),
        ({"acq_pixel": "73", "acq_instrument": "uvp6"}, 73.0),
        ({"acq_pixel": "0.147"}, 147.0),
        ({"process_pixel": "10.6", "acq_pixel": "0.092"}, 10.6),
        ({"process_particle_pixel_size_mm": "0.0106"}, 10.6),
    ],
    ids=["uvp5-mm", "uvp6-um", "magnitude-mm", "process-pixel-first", "pssdb-mm"],
)
def test_pixel_size_is_in_micrometres_whatever_the_source(tmp_path, columns, expected):
    header = (*HEADER, *columns)
    url = _write(tmp_path / "ecotaxa_x.tsv", [_row(**columns)], header=header)
    accepted, _, _ = _read(url)
    assert accepted["pixel_size_um"].iloc[0] == pytest.approx(expected)


def test_negative_pixel_size_is_quarantined(tmp_path):
    header = (*HEADER, "process_pixel")
    url = _write(tmp_path / "ecotaxa_x.tsv", [_row(process_pixel="-10.6")], header=header)
    _, quarantine, _ = _read(url)
    assert quarantine["reason"].tolist() == ["pixel size -10.6 µm must be positive"]


def test_subsample_fraction_is_read_and_one_when_absent_empty_or_a_missing_code(tmp_path):
    header = (*HEADER, "acq_subsample_fraction")
    cells = ["0.25", "1", "", "999999", "1,0"]
    rows = [_row(object_id=f"o{i}", acq_subsample_fraction=c) for i, c in enumerate(cells)]
    accepted, quarantine, _ = _read(_write(tmp_path / "ecotaxa_x.tsv", rows, header=header))
    assert len(quarantine) == 0
    assert accepted["subsample_fraction"].tolist() == [0.25, 1.0, 1.0, 1.0, 1.0]
    absent, _, _ = _read(_write(tmp_path / "ecotaxa_y.tsv", [_row()]))
    assert absent["subsample_fraction"].tolist() == [1.0]


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("0", "acq_subsample_fraction 0 is outside (0, 1]"),
        ("-0.5", "acq_subsample_fraction -0.5 is outside (0, 1]"),
        ("1.5", "acq_subsample_fraction 1.5 is outside (0, 1]"),
        ("half", "acq_subsample_fraction 'half' is not a fraction in (0, 1]"),
    ],
    ids=["zero", "negative", "above-one", "text"],
)
def test_subsample_fraction_outside_0_1_is_quarantined_naming_it(tmp_path, cell, reason):
    header = (*HEADER, "acq_subsample_fraction")
    rows = [_row(acq_subsample_fraction="0.5"), _row(object_id="o2", acq_subsample_fraction=cell)]
    accepted, quarantine, _ = _read(_write(tmp_path / "ecotaxa_x.tsv", rows, header=header))
    assert accepted["subsample_fraction"].tolist() == [0.5]
    assert quarantine[["line", "column"]].values.tolist() == [[3, "acq_subsample_fraction"]]
    assert quarantine["reason"].iloc[0].startswith(reason), quarantine["reason"].iloc[0]


# --- property: counts reconcile and good rows survive any corruption -------------------------

CORRUPTIONS = {
    "lat-text": lambda cells: cells.__setitem__(1, "far north"),
    "bad-date": lambda cells: cells.__setitem__(3, "2020-02-31"),
    "extra-field": lambda cells: cells.append("surplus"),
    "missing-field": lambda cells: cells.pop(),
    "latin1-byte": lambda cells: cells.__setitem__(8, "Copépode"),
    "duplicate-id": lambda cells: cells.__setitem__(0, "good0"),
    "negative-volume": lambda cells: cells.__setitem__(11, "-1"),
    "feature-text": lambda cells: cells.__setitem__(9, "n/a?"),
}


@given(
    n_rows=st.integers(min_value=1, max_value=25),
    corrupt=st.lists(
        st.tuples(st.integers(min_value=1, max_value=24), st.sampled_from(sorted(CORRUPTIONS))),
        max_size=10,
    ),
    decimal_comma=st.booleans(),
)
def test_generated_files_reconcile_and_keep_every_good_row(n_rows, corrupt, decimal_comma):
    damage = {i: kind for i, kind in corrupt if i < n_rows}  # row 0 is always good
    lines = []
    for i in range(n_rows):
        cells = [_row(object_id=f"good{i}")[h] for h in HEADER]
        if decimal_comma:
            cells[1] = '"43,5"'
        if i in damage:
            cells[0] = f"bad{i}"
            CORRUPTIONS[damage[i]](cells)
        lines.append("\t".join(cells))
    text = "\t".join(HEADER) + "\n" + "\n".join(lines) + "\n"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ecotaxa_generated.tsv"
        path.write_bytes(text.encode("latin-1" if "latin1-byte" in damage.values() else "utf-8"))
        accepted, quarantine, stats = _read(str(path), encoding="utf-8")
    good = [f"good{i}" for i in range(n_rows) if i not in damage]
    assert accepted["object_id"].tolist() == good
    assert np.allclose(accepted["lat"], 43.5)
    assert stats["rows_read"].iloc[0] == n_rows
    assert sorted(quarantine["line"]) == sorted(i + 2 for i in damage)
    named = quarantine["column"].isin(HEADER) | quarantine["column"].str.match(r"^(byte \d+)?$")
    assert named.all()
    assert (quarantine["reason"].str.len() > 0).all()
