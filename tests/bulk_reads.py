"""Helpers of the tests of bulk parsers (a batch read at once vs file by file)."""

from __future__ import annotations

import dataclasses
import pickle

import pandas as pd

from pipeline.sources import ecopart_clean
from pipeline.sources.table import ReadResult, result_of


def file_by_file(res: ReadResult) -> ReadResult:
    """The same read without its bulk parser: every file by the per-file parser."""
    return result_of([dataclasses.replace(b, parse_bulk=None) for b in res.batches])


def assert_same(got, want) -> None:
    """Assert the (accepted, quarantine, stats) tables are equal, to the bit."""
    for g, w in zip(got, want, strict=True):
        pd.testing.assert_frame_equal(g, w, check_exact=True)


def bulk_done(res: ReadResult) -> list[bool]:
    """Which files of a one-batch read its bulk parser reads."""
    (batch,) = res.batches
    return batch.parse_bulk(batch.urls, **batch.shared).done.tolist()


def bulk_done_after_pickling(res: ReadResult) -> list[bool]:
    """Pickle the batch of a one-batch read: assert it reads the same; what its bulk reads."""
    (batch,) = res.batches
    again = pickle.loads(pickle.dumps(batch))
    assert_same(again.read(), batch.read())
    return again.parse_bulk(again.urls, **again.shared).done.tolist()


def same_three_ways(res: ReadResult, monkeypatch) -> tuple[pd.DataFrame, ...]:
    """Compute a read; assert file by file and the careful path give the same tables.

    The careful path: file by file with the fast paths off (they stay off for the test).
    """
    got = res.compute()
    assert_same(got, file_by_file(res).compute())
    monkeypatch.setattr(ecopart_clean, "_FAST_PATHS", False)
    assert not any(bulk_done(res))
    assert_same(got, file_by_file(res).compute())
    return got
