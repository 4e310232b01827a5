"""The one URL opener: local, .gz, zip:// and glob expansion; safe relative joins."""

from __future__ import annotations

import gzip
import zipfile

import pytest

from pipeline.errors import InputFormatError
from pipeline.io import expand_urls, join_under, parent_url, read_bytes, url_exists


@pytest.fixture
def files(tmp_path):
    plain = tmp_path / "a.tsv"
    plain.write_bytes(b"depth\n2.5\n")
    gz = tmp_path / "a.tsv.gz"
    gz.write_bytes(gzip.compress(b"depth\n2.5\n"))
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("sub/a.tsv", b"depth\n2.5\n")
    return tmp_path


def test_read_bytes_reads_plain_gzip_and_zip_member_alike(files):
    urls = [
        str(files / "a.tsv"),
        str(files / "a.tsv.gz"),
        f"zip://sub/a.tsv::{files / 'a.zip'}",
    ]
    assert {read_bytes(u) for u in urls} == {b"depth\n2.5\n"}


def test_read_bytes_names_a_missing_file(tmp_path):
    with pytest.raises(InputFormatError, match=r"nothere\.tsv: file not found"):
        read_bytes(str(tmp_path / "nothere.tsv"))


def test_read_bytes_names_a_truncated_gzip(tmp_path):
    bad = tmp_path / "cut.tsv.gz"
    bad.write_bytes(gzip.compress(b"depth\n" * 1000)[:40])
    with pytest.raises(InputFormatError, match=r"cut\.tsv\.gz: cannot read the file"):
        read_bytes(str(bad))


def test_expand_urls_sorts_glob_matches_and_refuses_empty_patterns(files):
    (files / "b.tsv").write_bytes(b"x\n")
    assert [p.rsplit("/", 1)[-1] for p in expand_urls(str(files / "*.tsv"))] == ["a.tsv", "b.tsv"]
    with pytest.raises(InputFormatError, match="matches no file"):
        expand_urls(str(files / "*.nothing"))


def test_url_exists_is_true_only_for_files(files):
    assert url_exists(str(files / "a.tsv"))
    assert not url_exists(str(files))
    assert not url_exists(str(files / "zzz"))


@pytest.mark.parametrize(
    "relative",
    ["../x.png", "a/../../x.png", "/etc/passwd", "C:\\x.png", "s3://other/x.png", "..", ""],
    ids=["parent", "climb", "absolute", "windows-drive", "protocol", "dotdot", "empty"],
)
def test_join_under_refuses_paths_escaping_the_root(relative):
    assert join_under("/data/export", relative) is None


def test_join_under_normalises_backslashes_and_dots():
    assert join_under("/data/export/", "images\\a\\.\\b.png") == "/data/export/images/a/b.png"


def test_parent_url_keeps_chained_archives():
    assert parent_url("zip://sub/x.tsv::s3://b/a.zip") == "zip://sub::s3://b/a.zip"
