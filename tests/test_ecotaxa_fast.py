"""EcoTaxa TSVs read with typed columns (ecotaxa_clean): exactly the careful path's tables."""

from __future__ import annotations

import contextlib
import gzip
from collections.abc import Callable, Iterator
from pathlib import Path

import dask
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.demo.ecotaxa_writer import write_scale_export
from pipeline.sources import ecotaxa_clean
from pipeline.sources.ecotaxa import DEFAULT_FEATURES, read_ecotaxa
from pipeline.sources.ecotaxa_clean import _read_clean

N_ROWS = 400
PROFILES = pd.DataFrame(
    {
        "profile_id": ["p1", "p2", "p3"],
        "lat": [43.5, -10.25, 60.0],
        "lon": [7.25, -170.5, 179.9],
        "time": pd.to_datetime(
            ["2020-01-02 04:20:00", "2020-06-30 23:59:59", "2021-03-01 00:00:00"], utc=True
        ),
    }
)


@contextlib.contextmanager
def _careful() -> Iterator[None]:
    """Read with the careful path only (every cell as text), as before the typed read."""
    before, ecotaxa_clean._FAST_PATH = ecotaxa_clean._FAST_PATH, False
    try:
        yield
    finally:
        ecotaxa_clean._FAST_PATH = before


def _tables(url: str | list[str], **options) -> tuple[pd.DataFrame, ...]:
    options.setdefault("check_images", False)
    with dask.config.set(scheduler="sync"):
        return read_ecotaxa(url, **options).compute()


def _same_as_careful(url: str | list[str], **options) -> tuple[pd.DataFrame, ...]:
    """Read both ways; assert the accepted rows, quarantine and counts are identical."""
    fast = _tables(url, **options)
    with _careful():
        careful = _tables(url, **options)
    for mine, theirs in zip(fast, careful, strict=True):
        pd.testing.assert_frame_equal(mine, theirs, check_exact=True)
    stats = fast[2]
    assert (stats["rows_read"] == stats["rows_accepted"] + stats["rows_quarantined"]).all()
    return fast


def _mode(path: Path, **options) -> str:
    """How the fast path reads a file: 'typed', 'text' (numbers as text) or 'careful'."""
    rows = _read_clean(
        path.read_bytes().removeprefix(b"\xef\xbb\xbf"),
        str(path),
        encoding=options.get("encoding"),
        skip_type_row=True,
        features=options.get("features", DEFAULT_FEATURES),
    )
    if rows is None:
        return "careful"
    return "typed" if rows.floats else "text"


@pytest.fixture(scope="module")
def scale_lines(tmp_path_factory) -> list[str]:
    """The lines of a demo scale export (the benchmark's columns), header first."""
    folder = tmp_path_factory.mktemp("scale")
    (path,) = write_scale_export(folder, N_ROWS, PROFILES, seed=3)
    return path.read_text(encoding="utf-8").splitlines()


def _edit(lines: list[str], line: int, column: str, value: str) -> list[str]:
    """Set one cell (1-based line number, column by name)."""
    out = list(lines)
    at = out[0].split("\t").index(column)
    cells = out[line - 1].split("\t")
    cells[at] = value
    out[line - 1] = "\t".join(cells)
    return out


def _write(folder: Path, lines: list[str], *, end: str = "\n", encoding: str = "utf-8") -> Path:
    path = folder / "ecotaxa_export_fast.tsv"
    path.write_bytes((end.join(lines) + end).encode(encoding))
    return path


# --- real exports --------------------------------------------------------------------------

REAL = {
    "tara_export": ("ecotaxar_tara_zooscan/export.tsv", "typed"),
    "tara_import_type_row": ("ecotaxar_tara_zooscan/import.tsv", "typed"),
    "apero_import": ("zooprocesslib_apero2023_zooscan/ecotaxa_13892_13563.tsv", "typed"),
    "apero_import_2": ("zooprocesslib_apero2023_zooscan/ecotaxa_2855_223.tsv", "typed"),
    "zooscan_import": (
        "ecotaxa_back/zooscan_import/m106_mn01_n1_sml/ecotaxa_m106_mn01_n1_sml.tsv",
        "typed",
    ),
    "zooscan_tot_vol": (
        "ecotaxa_back/zooscan_import_tot_vol/m106_mn01_n1_sml/ecotaxa_m106_mn01_n1_sml.tsv",
        "typed",
    ),
    "vpr_sparse": (
        "ecotaxa_back/vpr_import_sparse/"
        "ecotaxa_20160719B-163000ish-HealyVPR08-2016_d200_h18_roi.tsv",
        "typed",
    ),
    "loki": ("ecotaxa_back/loki_import/ecotaxa.PS122.txt", "typed"),
    "export_hierarchy_extra_images": (
        "ecotaxa_back/export_with_hierarchy/ecotaxa_export_1_20210530_1122.tsv",
        "text",
    ),
    "export_comma_decimal": (
        "ecotaxa_back/export_comma_decimal/ecotaxa_m106_mn01_n1_sml.tsv",
        "text",
    ),
}


@pytest.mark.parametrize(("name", "mode"), REAL.values(), ids=list(REAL))
def test_real_exports_give_the_careful_tables_images_checked_or_not(shared_data, name, mode):
    path = shared_data / name
    assert _mode(path) == mode
    for check_images in ("auto", True, False):
        _same_as_careful(str(path), check_images=check_images)


def test_real_uvp6_latin1_import_and_gz_give_the_careful_tables(shared_data, tmp_path):
    folder = shared_data / "ecotaxa_back" / "uvp6_import"
    inner = f"zip://ecotaxa_b_da_19.tsv::zip://b_da_19_Images.zip::{folder / 'UVP6_example.zip'}"
    plain = tmp_path / "ecotaxa_b_da_19.tsv"  # what the reader sees: the decompressed bytes
    plain.write_bytes(gzip.decompress((folder / "ecotaxa_b_da_19.tsv.gz").read_bytes()))
    assert _mode(plain) == "careful"
    _same_as_careful(inner)
    _same_as_careful(inner, check_images="auto", encoding="utf-8")
    _same_as_careful(str(folder / "ecotaxa_b_da_19.tsv.gz"))


def test_real_folders_as_exported_give_the_careful_tables(shared_data):
    accepted, _, stats = _same_as_careful(
        [str(shared_data / "ecotaxa_back"), str(shared_data / "ecotaxar_tara_zooscan")]
    )
    assert len(stats) >= 10
    assert len(accepted) > 200


# --- the demo scale export, clean and damaged -------------------------------------------------


def test_clean_scale_export_is_read_typed_and_accepted_whole(scale_lines, tmp_path):
    path = _write(tmp_path, scale_lines)
    rows = _read_clean(
        path.read_bytes(), str(path), encoding=None, skip_type_row=True, features=DEFAULT_FEATURES
    )
    assert rows is not None
    assert {"object_area", "object_lat", "acq_pixel"} <= set(rows.floats)
    assert "object_area" not in rows.raw.cells  # no number held as text
    accepted, quarantine, stats = _same_as_careful(str(path))
    assert len(accepted) == N_ROWS
    assert quarantine.empty
    assert stats["rows_read"].tolist() == [N_ROWS]


def _cell(line: int, column: str, value: str) -> Callable[[list[str]], list[str]]:
    return lambda lines: _edit(lines, line, column, value)


DAMAGE: dict[str, tuple[Callable[[list[str]], list[str]], str]] = {
    # refused for their value, read typed
    "latitude_95": (_cell(5, "object_lat", "95"), "typed"),
    "longitude_200_wraps": (_cell(6, "object_lon", "200.5"), "typed"),
    "unknown_status": (_cell(7, "object_annotation_status", "maybe"), "typed"),
    "depths_swapped": (_cell(8, "object_depth_min", "1200.5"), "typed"),
    "empty_object_id": (_cell(9, "object_id", ""), "typed"),
    "bad_date": (_cell(10, "object_date", "20200231"), "typed"),
    "time_420": (_cell(11, "object_time", "420"), "typed"),
    "time_with_colons": (_cell(11, "object_time", "08:28:00.000"), "typed"),
    "fraction_above_1": (_cell(12, "acq_subsample_fraction", "1.5"), "typed"),
    "pixel_zero": (_cell(13, "acq_pixel", "0"), "typed"),
    "feature_9999_kept": (_cell(14, "object_area", "9999"), "typed"),
    "nan_in_text_column": (_cell(15, "sample_id", "nan"), "typed"),
    "utf8_category": (_cell(16, "object_annotation_category", "Copépode µ"), "typed"),
    "duplicate_object_id": (_cell(17, "object_id", "scale_3"), "typed"),
    # one number column read again as text (the careful to_float)
    "empty_feature": (_cell(5, "object_area", ""), "typed"),
    "nan_feature": (_cell(5, "object_mean", "nan"), "typed"),
    "na_feature": (_cell(5, "object_mean", "NA"), "text"),
    "depth_9999_missing": (_cell(6, "object_depth_min", "9999"), "typed"),
    "empty_latitude": (_cell(7, "object_lat", ""), "typed"),
    "empty_pixel": (_cell(8, "acq_pixel", ""), "typed"),
    # every number column read as text
    "text_in_feature": (_cell(5, "object_area", "lots"), "text"),
    "decimal_comma": (_cell(5, "object_lon", "7,25"), "text"),
    "degrees_minutes": (_cell(5, "object_lat", "43°30 0"), "text"),
    "text_in_fraction": (_cell(5, "acq_subsample_fraction", "half"), "text"),
    # split by the careful path
    "extra_field": (lambda lines: [*lines[:4], lines[4] + "\tsurplus", *lines[5:]], "careful"),
    "missing_field": (
        lambda lines: [*lines[:4], lines[4].rsplit("\t", 1)[0], *lines[5:]],
        "careful",
    ),
    "blank_line": (lambda lines: [*lines[:4], "", *lines[4:]], "careful"),
    "lone_carriage_return": (
        lambda lines: [*lines[:4], lines[4] + "\r" + lines[5], *lines[6:]],
        "careful",
    ),
    "type_row": (
        lambda lines: [lines[0], "\t".join("[t]" for _ in lines[0].split("\t")), *lines[1:]],
        "typed",
    ),
    "quoted_fields": (
        lambda lines: ['"' + line.replace("\t", '"\t"') + '"' for line in lines],
        "typed",
    ),
}


@pytest.mark.parametrize(("damage", "mode"), DAMAGE.values(), ids=list(DAMAGE))
def test_damaged_scale_export_gives_the_careful_tables(scale_lines, tmp_path, damage, mode):
    path = _write(tmp_path, damage(scale_lines))
    assert _mode(path) == mode
    _same_as_careful(str(path))


def test_refused_rows_keep_file_line_column_and_text(scale_lines, tmp_path):
    lines = _edit(scale_lines, 5, "object_lat", "95")
    lines = _edit(_edit(lines, 9, "object_annotation_status", "?"), 17, "object_id", "scale_3")
    path = _write(tmp_path, lines)
    _, quarantine, _ = _same_as_careful(str(path))
    assert quarantine[["line", "column"]].values.tolist() == [
        [5, "object_lat"],
        [9, "object_annotation_status"],
        [17, "object_id"],
    ]
    assert quarantine["raw"].tolist() == [lines[4], lines[8], lines[16]]
    assert quarantine["file"].eq(str(path)).all()
    assert "latitude 95.0 is outside [-90, 90]" in quarantine["reason"].iloc[0]
    assert "duplicate object_id 'scale_3': first at line 5" in quarantine["reason"].iloc[2]


def test_extra_images_of_an_object_keep_the_lowest_rank_as_careful(scale_lines, tmp_path):
    second = _edit(scale_lines, 3, "img_rank", "1")
    path = _write(tmp_path, [*scale_lines[:3], second[2], *scale_lines[3:]])
    accepted, quarantine, _ = _same_as_careful(str(path))
    assert quarantine["column"].tolist() == ["img_rank"]
    assert "extra image (img_rank 1)" in quarantine["reason"].iloc[0]
    assert len(accepted) == N_ROWS


@pytest.mark.parametrize(
    ("end", "bom", "encoding"),
    [("\r\n", False, None), ("\n", True, None), ("\n", False, "latin-1"), ("\n", False, "utf-8")],
    ids=["crlf", "bom", "explicit_latin1", "explicit_utf8"],
)
def test_line_ends_bom_and_explicit_encodings_give_the_careful_tables(
    scale_lines, tmp_path, end, bom, encoding
):
    path = _write(tmp_path, scale_lines, end=end)
    if bom:
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert _mode(path, encoding=encoding) == "typed"
    _same_as_careful(str(path), encoding=encoding)


def test_latin1_bytes_go_to_the_careful_path_decoded_or_quarantined(scale_lines, tmp_path):
    path = _write(
        tmp_path,
        _edit(scale_lines, 6, "object_annotation_category", "Copépode"),
        encoding="latin-1",
    )
    assert _mode(path) == "careful"
    _same_as_careful(str(path))
    _, quarantine, _ = _same_as_careful(str(path), encoding="utf-8")
    assert quarantine["line"].tolist() == [6]


@pytest.mark.parametrize(
    "features",
    [["area", "perim."], ["date", "area"], ["depth_min", "area"], []],
    ids=["tsv_names", "date_is_text_too", "depth_min_twice", "none"],
)
def test_feature_choices_give_the_careful_tables(scale_lines, tmp_path, features):
    path = _write(tmp_path, _edit(scale_lines, 4, "object_depth_min", "9999"))
    _same_as_careful(str(path), features=features)


# --- byte-range blocks -----------------------------------------------------------------------


def test_blocks_of_a_damaged_export_give_the_careful_whole_file_tables(scale_lines, tmp_path):
    lines = list(scale_lines)
    for line, column, value in [
        (20, "object_lat", "95"),
        (90, "object_area", ""),
        (150, "object_area", "lots"),
        (151, "object_id", "scale_147"),  # line 149, in the same block
        (260, "object_depth_min", "9999"),
        (330, "object_lon", "7,25"),
    ]:
        lines = _edit(lines, line, column, value)
    lines = [*lines[:200], lines[200] + "\tsurplus", *lines[201:]]
    path = _write(tmp_path, lines)
    size = path.stat().st_size
    whole = _same_as_careful(str(path), batch_bytes=2 * size)
    blocks = _same_as_careful(str(path), batch_bytes=size // 6)
    n_blocks = len(read_ecotaxa(str(path), batch_bytes=size // 6, check_images=False).batches)
    assert n_blocks >= 6
    for mine, theirs in zip(blocks[:2], whole[:2], strict=True):
        pd.testing.assert_frame_equal(mine.reset_index(drop=True), theirs.reset_index(drop=True))
    # the empty area, the missing-code depth and the decimal comma are read, not refused
    assert whole[1]["line"].tolist() == [20, 150, 151, 201]
    assert blocks[2]["rows_read"].sum() == whole[2]["rows_read"].sum() == N_ROWS


# --- property: any damage, the careful path's tables ------------------------------------------

EDITS = {
    "lat-text": ("object_lat", "far north"),
    "lat-95": ("object_lat", "-95"),
    "lat-empty": ("object_lat", ""),
    "depth-code": ("object_depth_max", "999999"),
    "depth-comma": ("object_depth_max", "12,5"),
    "feature-empty": ("object_mean", ""),
    "feature-nan": ("object_mean", "NaN"),
    "feature-text": ("object_mean", "n/a?"),
    "status": ("object_annotation_status", "V"),
    "status-bad": ("object_annotation_status", "sure"),
    "date": ("object_date", "2020-01-05"),
    "time": ("object_time", "25:00"),
    "repeat": ("object_id", "scale_0"),
    "rank": ("img_rank", "2"),
    "fraction": ("acq_subsample_fraction", "0"),
}


@given(
    edits=st.lists(
        st.tuples(st.integers(min_value=2, max_value=41), st.sampled_from(sorted(EDITS))),
        max_size=6,
    ),
    crlf=st.booleans(),
)
def test_any_damage_gives_the_careful_tables(scale_lines, tmp_path_factory, edits, crlf):
    lines = scale_lines[:41]
    for line, kind in edits:
        lines = _edit(lines, line, *EDITS[kind])
    path = _write(tmp_path_factory.mktemp("any"), lines, end="\r\n" if crlf else "\n")
    _same_as_careful(str(path))
