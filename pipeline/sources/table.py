"""Shared machinery of the tabular readers: tokenising, checking and quarantining rows.

Developer note
--------------
Every tabular reader (EcoPart, EcoTaxa) follows the same three steps per file:

1. :func:`tokenize` turns the file's bytes into a :class:`RawTable` of text cells
   (one row per data line, with its 1-based line number), quarantining undecodable
   lines and lines with the wrong number of fields;
2. the reader converts and validates columns with :func:`to_float` and the
   :class:`RowChecker`, which records the *first* reason each row is refused;
3. :meth:`RowChecker.result` splits accepted rows from the quarantine and returns a
   :class:`FileResult` whose counts reconcile: ``rows_read == rows_accepted +
   rows_quarantined``.

:func:`read_many` maps a per-file parser over many URLs lazily into a
:class:`ReadResult`: :func:`plan_batches` cuts the files into batches of about
:data:`BATCH_BYTES` of input (at least :data:`FILES_PER_TASK` files each while the bytes
allow), and one dask task parses a batch, so the graph grows with bytes, not with files
or rows. A reader may also pass a *bulk* parser: it reads the files of a batch that it
can at once (clean files, every row accepted: one ``pd.read_csv`` for the batch instead
of one per file, see :class:`BulkResult`) and leaves the others to the per-file parser, so
the tables are the same as file by file. What every file of a read needs (the metadata
summary of an EcoPart export) is passed as ``shared`` keyword arguments: one key of the
graph that every batch task depends on (:func:`batch_tasks`), not a copy per batch (at
3,000 files a copy per batch made a 1.2 MB graph). A file that cannot be read at all
(missing, truncated archive, empty) becomes one quarantine row with ``line = 0``; it never
stops the other files.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pipeline.errors import InputFormatError
from pipeline.sources.archive import ArchiveFile

__all__ = [
    "BATCH_BYTES",
    "FILES_PER_TASK",
    "MIN_BATCHES",
    "MISSING_SENTINELS",
    "QUARANTINE_META",
    "STATS_META",
    "Batch",
    "BulkResult",
    "FileResult",
    "RawTable",
    "ReadResult",
    "RowChecker",
    "batch_tasks",
    "conform",
    "file_failure",
    "plan_batches",
    "read_many",
    "result_of",
    "to_float",
    "tokenize",
]

logger = logging.getLogger(__name__)

#: Fewest files parsed by one task of :func:`read_many` (while the bytes allow).
FILES_PER_TASK = 50

#: Input bytes read by one task of :func:`read_many`, at most (about): 128 MiB.
BATCH_BYTES = 128 * 2**20

#: Tasks :func:`read_many` makes, at most, from inputs smaller than :data:`BATCH_BYTES`
#: (so a few thousand small files still keep the workers of a cluster busy).
MIN_BATCHES = 32

#: Numeric "missing" codes seen in EcoTaxa/EcoPart exports (PSSdb standardizer NA_value).
MISSING_SENTINELS: tuple[str, ...] = ("999999", "99999", "9999", "99999999999")

#: Columns of every quarantine table: where (file, line, column), why, and the line itself.
QUARANTINE_META = pd.DataFrame(
    {
        "file": pd.Series([], dtype=str),
        "line": pd.Series([], dtype="int64"),
        "column": pd.Series([], dtype=str),
        "reason": pd.Series([], dtype=str),
        "raw": pd.Series([], dtype=str),
    }
)

#: One row per file: how many data rows were read, accepted and quarantined.
STATS_META = pd.DataFrame(
    {
        "file": pd.Series([], dtype=str),
        "rows_read": pd.Series([], dtype="int64"),
        "rows_accepted": pd.Series([], dtype="int64"),
        "rows_quarantined": pd.Series([], dtype="int64"),
    }
)

_RAW_MAX_CHARS = 2000


@dataclass
class RawTable:
    """Text cells of one delimited file, before any conversion.

    Attributes
    ----------
    url : str
        The file read.
    header : list of str
        Column names as written (quotes and surrounding blanks removed).
    cells : pandas.DataFrame
        One row per data line that had the right number of fields, one ``str`` column
        per header name, plus ``_line`` (1-based line number in the file).
    lines : mapping of int to str
        The text of every data line, by line number (kept to fill ``raw`` when a row
        is quarantined, so nothing is lost; decoded on demand by the fast path).
    quarantine : list of dict
        Lines refused while tokenising (undecodable, wrong field count).
    rows_read : int
        Data lines seen (empty lines and the header/type rows excluded).
    encoding : str
        Encoding used to decode the file.
    """

    url: str
    header: list[str]
    cells: pd.DataFrame
    lines: Mapping[int, str]
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    rows_read: int = 0
    encoding: str = "utf-8"

    def shifted(self, by: int) -> RawTable:
        """Return the table with every line number moved by ``by`` (a block of a file).

        Examples
        --------
        >>> t = tokenize(b"a\\tb\\n1\\t2\\n", "x.tsv").shifted(10)
        >>> t.cells["_line"].tolist(), dict(t.lines)
        ([12], {12: '1\\t2'})
        """
        cells = self.cells.assign(_line=self.cells["_line"] + by)
        if isinstance(self.lines, _LineTexts):
            lines: Mapping[int, str] = self.lines.shifted(by)
        else:
            lines = {k + by: v for k, v in self.lines.items()}
        quarantine = [{**q, "line": q["line"] + by} for q in self.quarantine]
        return replace(self, cells=cells, lines=lines, quarantine=quarantine)

    def missing_columns(self, required: Iterable[str]) -> list[str]:
        """Return the names of ``required`` that are not in the header, in order."""
        present = set(self.header)
        return [c for c in required if c not in present]


class _LineTexts(Mapping[int, str]):
    """The text of a file's data lines by line number, decoded from its bytes on demand.

    Holds the bytes instead of one Python string per line (the fast path of
    :func:`tokenize` keeps millions of lines for the few quarantined); the line offsets
    are found on the first look-up.
    """

    def __init__(self, data: bytes, encoding: str, first: int, count: int, shift: int = 0):
        self._data, self._encoding = data, encoding
        self._first, self._count, self._shift = first, count, shift
        self._starts: np.ndarray | None = None

    def shifted(self, by: int) -> _LineTexts:
        out = _LineTexts(self._data, self._encoding, self._first, self._count, self._shift + by)
        out._starts = self._starts
        return out

    def __getitem__(self, number: int) -> str:
        line = int(number) - self._shift  # its line number in the data
        if not self._first <= line < self._first + self._count:
            raise KeyError(number)
        if self._starts is None:
            breaks = np.flatnonzero(np.frombuffer(self._data, dtype=np.uint8) == ord("\n"))
            self._starts = np.concatenate([[0], breaks + 1, [len(self._data) + 1]])
        start, stop = int(self._starts[line - 1]), int(self._starts[line]) - 1
        return self._data[start:stop].rstrip(b"\r").decode(self._encoding)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self._first + self._shift, self._first + self._shift + self._count))

    def __len__(self) -> int:
        return self._count


@dataclass
class FileResult:
    """What a reader made of one file: accepted rows, quarantine, and counts."""

    url: str
    accepted: pd.DataFrame
    quarantine: pd.DataFrame
    rows_read: int
    #: Input rows used, when the accepted table aggregates them (raw PAR lines into
    #: 5 m bins); None means one accepted row per input row.
    rows_accepted: int | None = None

    @property
    def stats(self) -> pd.DataFrame:
        """One-row frame of ``STATS_META`` columns for this file."""
        return _stats_frame([_stats_row(self)])


@dataclass
class BulkResult:
    """What a bulk parser made of the files of a batch: those read at once, all accepted.

    Attributes
    ----------
    done : numpy.ndarray of bool
        One value per file of the batch: its rows are in ``accepted``, every row it has
        accepted and none quarantined. The other files are parsed one by one.
    accepted : pandas.DataFrame
        The rows of the ``done`` files, file after file in the batch's order (the
        per-file parser's columns, in any order; the batch conforms them once).
    rows_read : numpy.ndarray of int64
        One value per file: its data rows (the rows it has in ``accepted``, unless
        ``table_rows`` says otherwise); 0 where not done.
    table_rows : numpy.ndarray of int64, optional
        One value per file: its rows in ``accepted`` when they aggregate the data rows
        (raw PAR lines binned to 5 m); None: ``rows_read``.
    """

    done: np.ndarray
    accepted: pd.DataFrame
    rows_read: np.ndarray
    table_rows: np.ndarray | None = None


@dataclass(frozen=True)
class Batch:
    """One batch of files read by one task: what :func:`read_many` maps over.

    Attributes
    ----------
    name : str
        Stable name: the batch's position and a hash of its files, their sizes and the
        parser with its options. The same inputs give the same names, so a writer can
        skip the batches an interrupted run already wrote.
    urls : tuple of str
        The files, in order.
    parse_one : callable
        ``parse_one(url, **shared) -> FileResult`` (picklable).
    meta : pandas.DataFrame
        Empty accepted table (columns and dtypes).
    continues : bool
        A byte-range block after the first of a big file (its ``stats`` row is another
        part of a file already counted).
    shared : mapping, optional
        Keyword arguments of ``parse_one`` that all the batches of a read share (one
        object, by identity): a graph holds them once (:func:`batch_tasks`).
    parse_bulk : callable, optional
        ``parse_bulk(urls, **shared) -> BulkResult`` (picklable): reads the files it can
        at once; ``parse_one`` parses the others.
    """

    name: str
    urls: tuple[str, ...]
    parse_one: Callable[..., FileResult]
    meta: pd.DataFrame
    continues: bool = False
    shared: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    parse_bulk: Callable[..., BulkResult] | None = None

    def read(
        self, shared: Mapping[str, Any] | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Parse the files: ``(accepted, quarantine, stats)``, each in file order.

        ``shared`` replaces the batch's own shared arguments (a task of
        :func:`batch_tasks` gets them from their one key of the graph).
        """
        kw = self.shared if shared is None else shared
        parse = functools.partial(self.parse_one, **kw) if kw else self.parse_one
        bulk = self.parse_bulk
        if bulk is not None and kw:
            bulk = functools.partial(bulk, **kw)
        return _parse_batch(parse, self.urls, self.meta, parse_bulk=bulk)

    def renamed(self, index: int) -> Batch:
        """Return the same batch at another position (batches of several reads joined)."""
        return replace(self, name=f"{index:05d}-{self.name.split('-', 1)[-1]}")


def batch_tasks(
    batches: Sequence[Batch],
    func: Callable[..., Any],
    *args: Any,
    prefix: str,
    pure: bool,
    nout: int | None = None,
) -> list[Any]:
    """One delayed ``func(batch, shared, *args)`` per batch, each read's ``shared`` once.

    The batches travel without their shared arguments; those of each read (one object,
    by identity) become one key of the graph that the read's tasks depend on, so the
    graph grows with batches, not with batches times the size of the shared table.

    Parameters
    ----------
    batches : sequence of Batch
        The batches, in order.
    func : callable
        ``func(batch, shared, *args)``; call ``batch.read(shared)`` in it.
    *args
        Further arguments of every call.
    prefix : str
        Key prefix: the task of a batch is ``<prefix>-<batch name>``.
    pure : bool
        Whether ``func`` is pure (see :func:`dask.delayed`).
    nout : int, optional
        Number of outputs of ``func`` (see :func:`dask.delayed`).

    Returns
    -------
    list of dask.delayed.Delayed
        One per batch, in order.

    Examples
    --------
    >>> def parse(url, *, table):
    ...     return FileResult(url, table.assign(f=url), QUARANTINE_META.copy(), rows_read=1)
    >>> table = pd.DataFrame({"x": [1.0]})
    >>> meta = pd.DataFrame({"x": [1.0], "f": ["a"]}).iloc[:0]
    >>> res = read_many(["a", "b", "c"], parse, meta, files_per_task=1, shared={"table": table})
    >>> tasks = batch_tasks(res.batches, lambda b, sh: len(b.read(sh)[0]), prefix="n", pure=True)
    >>> graph = dict(dask.delayed(tasks).__dask_graph__())
    >>> [k.split("-")[:2] for k in graph if "-shared-" in k]  # one copy for three tasks
    [['n', 'shared']]
    >>> dask.compute(*tasks)
    (1, 1, 1)
    """
    keys: dict[int, Any] = {}
    out = []
    for b in batches:
        shared = None
        if b.shared:
            shared = keys.get(id(b.shared))
            if shared is None:
                token = dask.base.tokenize(dict(b.shared))
                shared = keys[id(b.shared)] = dask.delayed(
                    b.shared, name=f"{prefix}-shared-{token}", traverse=False
                )
        light = replace(b, shared=None)
        out.append(
            dask.delayed(func, pure=pure, nout=nout)(
                light, shared, *args, dask_key_name=f"{prefix}-{b.name}"
            )
        )
    return out


@dataclass
class ReadResult:
    """Lazy result of a reader over many files.

    Attributes
    ----------
    accepted : dask.dataframe.DataFrame
        The canonical table (one partition per file).
    quarantine : dask.dataframe.DataFrame
        Refused rows: ``file, line, column, reason, raw`` (``line = 0`` for a problem
        with the whole file, such as an empty or unreadable file).
    stats : dask.dataframe.DataFrame
        One row per file: ``file, rows_read, rows_accepted, rows_quarantined``; for each
        file ``rows_read == rows_accepted + rows_quarantined``.
    inventory : pandas.DataFrame, optional
        Every file found in the inputs (folders, archives) and what the reader did with it
        (:data:`pipeline.sources.archive.INVENTORY_META`: ``file, size_bytes, kind,
        action``): read, used as metadata, or listed as not read (ZOO, CTD, unknown).
    batches : list of Batch, optional
        The batches of files behind the partitions, in order: a writer that streams
        (:func:`pipeline.ingest.write_ingest`) reads and writes each in one task.
    """

    accepted: dd.DataFrame
    quarantine: dd.DataFrame
    stats: dd.DataFrame
    inventory: pd.DataFrame | None = None
    batches: list[Batch] | None = None

    def compute(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Compute accepted rows, quarantine and stats in one pass over the files."""
        return dask.compute(self.accepted, self.quarantine, self.stats)


def tokenize(
    data: bytes,
    url: str,
    *,
    encoding: str | None = None,
    sep: str = "\t",
    comment: str | None = None,
    skip_type_row: bool = False,
) -> RawTable:
    """Split a delimited text file into text cells, quarantining malformed lines.

    Parameters
    ----------
    data : bytes
        The file content.
    url : str
        The file's URL, reported in the quarantine.
    encoding : str, optional
        ``None`` (default) decodes as UTF-8 when the whole file is valid UTF-8 and as
        latin-1 otherwise (EcoPart and UVP6 files are latin-1). An explicit encoding is
        strict: lines that do not decode are quarantined.
    sep : str
        Field separator.
    comment : str, optional
        Lines starting with this prefix (ODV ``//``) are skipped.
    skip_type_row : bool
        Skip an EcoTaxa import type row (``[t]``/``[f]``) right after the header.

    Returns
    -------
    RawTable
        Text cells with line numbers, and the lines refused.

    Raises
    ------
    InputFormatError
        When the file has no header line (empty or blank).

    Examples
    --------
    >>> t = tokenize(b"a\\tb\\r\\n1\\t2\\r\\n3\\r\\n", "x.tsv")
    >>> t.cells.to_dict("list")
    {'a': ['1'], 'b': ['2'], '_line': [2]}
    >>> t.quarantine[0]["reason"]
    'expected 2 fields (as in the header), found 1'
    """
    fast = _tokenize_fast(
        data, url, encoding=encoding, sep=sep, comment=comment, skip_type_row=skip_type_row
    )
    if fast is not None:
        return fast
    raw_lines = data.split(b"\n")
    if encoding is None:
        try:
            data.decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError:
            encoding = "latin-1"
            logger.info("%s: not valid UTF-8, decoding as latin-1", url)
    quarantine: list[dict[str, Any]] = []
    header: list[str] | None = None
    lines: dict[int, str] = {}
    rows: list[list[str]] = []
    line_numbers: list[int] = []
    rows_read = 0
    type_row_pending = skip_type_row
    for lineno, raw in enumerate(raw_lines, start=1):
        raw = raw.rstrip(b"\r")
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as err:
            if header is None:
                raise InputFormatError(
                    f"{url}:{lineno}: the header is not valid {encoding} "
                    f"(byte {raw[err.start : err.start + 1]!r} at position {err.start}). "
                    "Pass encoding='latin-1' for EcoPart/UVP files."
                ) from err
            rows_read += 1
            quarantine.append(
                _qrow(
                    url,
                    lineno,
                    f"byte {err.start}",
                    f"undecodable bytes ({encoding}): {raw[err.start : err.end + 3]!r}",
                    raw.decode("latin-1"),
                )
            )
            continue
        if not text.strip() or (comment and text.startswith(comment)):
            continue
        fields = _split(text, sep)
        if header is None:
            header = [f.strip() for f in fields]
            continue
        if type_row_pending:
            type_row_pending = False
            if fields and fields[0].strip().startswith("["):
                continue
        rows_read += 1
        if len(fields) > len(header) and not any(f.strip() for f in fields[len(header) :]):
            fields = fields[: len(header)]
        if len(fields) != len(header):
            quarantine.append(
                _qrow(
                    url,
                    lineno,
                    "",
                    f"expected {len(header)} fields (as in the header), found {len(fields)}",
                    text,
                )
            )
            continue
        rows.append(fields)
        line_numbers.append(lineno)
        lines[lineno] = text
    if header is None:
        raise InputFormatError(f"{url}: the file is empty (no header line).")
    cells = (
        pd.DataFrame(rows, columns=_dedupe(header), dtype=str)
        if rows
        else (pd.DataFrame({c: pd.Series([], dtype=str) for c in _dedupe(header)}))
    )
    cells["_line"] = np.asarray(line_numbers, dtype="int64")
    return RawTable(
        url=url,
        header=header,
        cells=cells,
        lines=lines,
        quarantine=quarantine,
        rows_read=rows_read,
        encoding=encoding,
    )


def _tokenize_fast(
    data: bytes,
    url: str,
    *,
    encoding: str | None,
    sep: str,
    comment: str | None,
    skip_type_row: bool,
) -> RawTable | None:
    """Tokenise a well-formed file with pyarrow's CSV parser; None when it needs care.

    Well-formed: decodable, no blank line between data lines, every line with the
    header's number of fields, no line end inside quotes, no comment lines. The result is
    then the one :func:`tokenize`'s line-by-line path gives, at C speed.
    """
    if comment or b"\x00" in data[:4096]:
        return None
    try:
        if encoding is None:
            try:
                data.decode("utf-8")
                encoding = "utf-8"
            except UnicodeDecodeError:
                encoding = "latin-1"
        else:
            data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None
    if data.count(b"\r") != data.count(b"\r\n"):
        return None  # a lone carriage return: the careful path splits as it does
    n = data.count(b"\n") + 1  # lines, the last one maybe empty
    end = len(data)
    while n:  # drop trailing blank lines
        start = data.rfind(b"\n", 0, end) + 1
        if data[start:end].strip():
            break
        n, end = n - 1, start - 1
    if n < 2:
        return None
    header_text = data[: data.find(b"\n")].rstrip(b"\r").decode(encoding)
    header = [f.strip() for f in _split(header_text, sep)]
    # pyarrow refuses a line with the wrong number of fields and skips blank lines (then the
    # counts differ): either way the careful path reads the file and says which line
    try:
        names = [str(i) for i in range(len(header))]
        table = pacsv.read_csv(
            io.BytesIO(data if encoding == "utf-8" else data.decode(encoding).encode("utf-8")),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, ValueError):
        return None
    cells = table.to_pandas()
    if len(cells) != n - 1:
        return None  # a blank line, a line end inside quotes
    first = 2
    if skip_type_row and len(cells) and str(cells.iat[0, 0]).strip().startswith("["):
        cells = cells.iloc[1:].reset_index(drop=True)
        first = 3
    cells.columns = _dedupe(header)
    return _clean_table(url, header, cells, data, encoding, first=first, n_lines=n)


def _clean_table(
    url: str,
    header: list[str],
    cells: pd.DataFrame,
    data: bytes,
    encoding: str,
    *,
    first: int,
    n_lines: int,
) -> RawTable:
    """Return the RawTable of a file split whole: ``cells``, its lines from ``first`` on.

    ``n_lines`` counts the file's lines up to its last non-blank one; nothing refused.
    """
    cells["_line"] = np.arange(first, first + len(cells), dtype="int64")
    return RawTable(
        url=url,
        header=header,
        cells=cells,
        lines=_LineTexts(data, encoding, first, n_lines - first + 1),
        quarantine=[],
        rows_read=len(cells),
        encoding=encoding,
    )


def _split(text: str, sep: str) -> list[str]:
    if '"' not in text:
        return text.split(sep)
    return next(csv.reader([text], delimiter=sep))


def _dedupe(header: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for h in header:
        if h in seen:
            seen[h] += 1
            out.append(f"{h}.{seen[h]}")
        else:
            seen[h] = 0
            out.append(h)
    return out


def _qrow(url: str, line: int, column: str, reason: str, raw: str) -> dict[str, Any]:
    return {
        "file": url,
        "line": int(line),
        "column": column,
        "reason": reason,
        "raw": raw[:_RAW_MAX_CHARS],
    }


def to_float(
    values: pd.Series | pd.DataFrame,
    *,
    missing: Sequence[str] = MISSING_SENTINELS,
) -> tuple[np.ndarray, np.ndarray]:
    """Convert text cells to floats, accepting comma decimals and missing-value codes.

    Parameters
    ----------
    values : pandas.Series or DataFrame of str
        Text cells, as in :attr:`RawTable.cells`. Many columns are converted in one pass
        (a column at a time costs ~0.5 ms per call, whatever its length).
    missing : sequence of str
        Codes read as missing (NaN, not an error); an empty cell is always missing.

    Returns
    -------
    numbers : numpy.ndarray of float64
        The values, NaN where missing or unparseable; shape ``(rows,)`` for a Series,
        ``(rows, columns)`` for a DataFrame.
    bad : numpy.ndarray of bool
        True where a non-empty, non-missing cell could not be parsed.

    Examples
    --------
    >>> v, bad = to_float(pd.Series(["1.5", "18,0", "", "999999", "abc"]))
    >>> v.tolist()[:2], bad.tolist()
    ([1.5, 18.0], [False, False, False, False, True])
    >>> to_float(pd.DataFrame({"a": ["1", "x"], "b": ["2,5", ""]}))[1].tolist()
    [[False, False], [True, False]]
    """
    fast = _to_float_fast(values, missing)
    if fast is not None:
        return fast, np.zeros(fast.shape, dtype=bool)
    if isinstance(values, pd.DataFrame):
        numbers, bad = to_float(pd.Series(values.to_numpy(dtype=object).ravel()), missing=missing)
        return numbers.reshape(values.shape), bad.reshape(values.shape)
    text = values.astype(str).str.strip()
    text = text.str.replace(r"^(-?\d*),(\d+)$", r"\1.\2", regex=True)
    is_missing = (text == "") | text.isin(list(missing)) | values.isna().to_numpy()
    numbers = np.array(
        pd.to_numeric(text.where(~is_missing), errors="coerce"), dtype="float64", copy=True
    )
    bad = np.isnan(numbers) & ~is_missing.to_numpy()
    numbers[is_missing.to_numpy()] = np.nan
    return numbers, bad


def _to_float_fast(values: pd.Series | pd.DataFrame, missing: Sequence[str]) -> np.ndarray | None:
    """Convert clean cells at C speed; None when any cell needs :func:`to_float`'s care.

    Clean: every cell a plain number (no empty cell, decimal comma, missing code, ``nan``).
    The careful path then gives the same numbers, so this only saves time.
    """
    try:
        columns = [values] if isinstance(values, pd.Series) else [values[c] for c in values]
        cast = [
            pc.cast(pa.array(c, from_pandas=True), pa.float64()).to_numpy(zero_copy_only=False)
            for c in columns
        ]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError):
        return None
    numbers = cast[0] if isinstance(values, pd.Series) else np.column_stack(cast)
    numbers = np.asarray(numbers, dtype="float64").reshape(values.shape)
    if np.isnan(numbers).any():
        return None
    codes = [float(m) for m in missing if _is_number(m)]
    if codes and np.isin(numbers, codes).any():
        return None
    return numbers


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class RowChecker:
    """Collect the first reason each row of a :class:`RawTable` is refused.

    Parameters
    ----------
    raw : RawTable
        The tokenised file; its rows are checked in place.

    Examples
    --------
    >>> raw = tokenize(b"lat\\n10\\n95\\n", "x.tsv")
    >>> lat, bad = to_float(raw.cells["lat"])
    >>> check = RowChecker(raw)
    >>> check.flag(bad, "lat", "not a number")
    >>> check.flag(np.abs(lat) > 90, "lat", "latitude out of [-90, 90]")
    >>> res = check.result(raw.cells.assign(lat=lat))
    >>> len(res.accepted), res.quarantine["reason"].tolist(), res.rows_read
    (1, ['latitude out of [-90, 90]'], 2)
    """

    def __init__(self, raw: RawTable) -> None:
        self.raw = raw
        n = len(raw.cells)
        self._reason = np.full(n, None, dtype=object)
        self._column = np.full(n, None, dtype=object)
        self._refused = np.zeros(n, dtype=bool)  # _reason is not None, kept apart (speed)

    def flag(
        self,
        mask: np.ndarray | pd.Series,
        column: str,
        reason: str | np.ndarray | pd.Series,
    ) -> None:
        """Refuse the rows where ``mask`` is true (unless already refused).

        Parameters
        ----------
        mask : array of bool
            One value per row of ``raw.cells``.
        column : str
            The column at fault, as written in the file.
        reason : str or array of str
            Why; an array gives one reason per row (e.g. with the bad value).
        """
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return  # the usual case: no comparison over the object array
        mask = mask & ~self._refused
        if not mask.any():
            return
        self._column[mask] = column
        self._reason[mask] = reason if isinstance(reason, str) else np.asarray(reason)[mask]
        self._refused |= mask

    def flag_all(self, column: str, reason: str) -> None:
        """Refuse every row (a problem with the whole file, e.g. a missing column)."""
        self.flag(np.ones(len(self.raw.cells), dtype=bool), column, reason)

    @property
    def refused(self) -> np.ndarray:
        """Boolean mask of the rows refused so far."""
        return self._refused.copy()

    def result(self, table: pd.DataFrame) -> FileResult:
        """Split ``table`` (aligned with ``raw.cells``) into accepted rows and quarantine.

        Parameters
        ----------
        table : pandas.DataFrame
            The converted table, one row per row of ``raw.cells`` in the same order.

        Returns
        -------
        FileResult
            Accepted rows (index reset), the quarantine (tokenising problems and
            refused rows, sorted by line) and the count of data lines read.
        """
        refused = self.refused
        lines = self.raw.cells["_line"].to_numpy()
        rows = [
            _qrow(self.raw.url, ln, col, reason, self.raw.lines.get(int(ln), ""))
            for ln, col, reason in zip(
                lines[refused], self._column[refused], self._reason[refused], strict=True
            )
        ]
        quarantine = _quarantine_frame(self.raw.quarantine + rows)
        # no copy of a table none of whose rows is refused
        accepted = table.loc[~refused] if refused.any() else table
        accepted = accepted.reset_index(drop=True)
        return FileResult(
            url=self.raw.url,
            accepted=accepted,
            quarantine=quarantine,
            rows_read=self.raw.rows_read,
        )


def _quarantine_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    if not rows:
        return QUARANTINE_META.copy()
    frame = pd.DataFrame(rows, columns=list(QUARANTINE_META.columns))
    return frame.astype(QUARANTINE_META.dtypes.to_dict()).sort_values(
        "line", kind="stable", ignore_index=True
    )


def file_failure(url: str, reason: str, meta: pd.DataFrame, *, rows_read: int = 0) -> FileResult:
    """Build the result of a file that could not be read at all.

    Parameters
    ----------
    url : str
        The file.
    reason : str
        What is wrong and what to do (becomes the quarantine reason).
    meta : pandas.DataFrame
        Empty frame with the accepted table's columns and dtypes.
    rows_read : int
        Data rows counted before the failure, if any.

    Returns
    -------
    FileResult
        No accepted rows; one quarantine row with ``line = 0``.
    """
    return FileResult(
        url=url,
        accepted=meta.iloc[:0].copy(),
        quarantine=_quarantine_frame([_qrow(url, 0, "", reason, "")]),
        rows_read=rows_read,
    )


def conform(frame: pd.DataFrame, meta: pd.DataFrame) -> pd.DataFrame:
    """Reindex ``frame`` to ``meta``'s columns and cast to its dtypes (missing → NA)."""
    out = frame.reindex(columns=meta.columns)
    return out.astype(meta.dtypes.to_dict())


def _safe_parse(parse_one: Callable[[str], FileResult], url: str, meta: pd.DataFrame) -> FileResult:
    try:
        return parse_one(url)
    except InputFormatError as err:
        logger.warning("%s", err)
        return file_failure(url, str(err), meta)


def plan_batches(
    files: Sequence[str | ArchiveFile],
    *,
    batch_bytes: int | None = None,
    files_per_task: int | None = None,
    min_batches: int | None = None,
) -> list[list[ArchiveFile]]:
    """Cut files, in the order given, into batches of about equal input bytes.

    The number of batches is the larger of ``ceil(total bytes / batch_bytes)`` (so no
    batch reads much more than ``batch_bytes``) and ``min(min_batches, ceil(files /
    files_per_task))`` (so small inputs still give the workers several tasks, but never
    many fewer than ``files_per_task`` files each): the graph grows with the bytes, not with
    the files, and a batch of small files costs one task. A file of unknown size counts
    as the median known size (1 byte when none is known).

    Parameters
    ----------
    files : sequence of str or ArchiveFile
        Files (with their sizes, from :func:`pipeline.sources.archive.list_files`).
    batch_bytes : int, optional
        Input bytes per batch, at most (about); default :data:`BATCH_BYTES`.
    files_per_task : int, optional
        Fewest files per batch while the bytes allow; default :data:`FILES_PER_TASK`.
    min_batches : int, optional
        Batches made from small inputs, at most; default :data:`MIN_BATCHES`.

    Returns
    -------
    list of list of ArchiveFile
        Contiguous batches, none empty.

    Raises
    ------
    InputFormatError
        When an option is not a positive integer.

    Examples
    --------
    >>> files = [ArchiveFile(f"f{i}", 10) for i in range(7)]
    >>> [len(b) for b in plan_batches(files, batch_bytes=30)]
    [3, 2, 2]
    >>> [len(b) for b in plan_batches(files, files_per_task=2)]
    [2, 2, 2, 1]
    """
    size = _positive(files_per_task, FILES_PER_TASK, "files_per_task")
    limit = _positive(batch_bytes, BATCH_BYTES, "batch_bytes")
    most = _positive(min_batches, MIN_BATCHES, "min_batches")
    items = [f if isinstance(f, ArchiveFile) else ArchiveFile(str(f), None) for f in files]
    if not items:
        return []
    known = [f.size for f in items if f.size is not None]
    fill = int(np.median(known)) if known else 1
    sizes = np.array([max(f.size if f.size is not None else fill, 1) for f in items], "float64")
    total = float(sizes.sum())
    n = max(math.ceil(total / limit), min(most, math.ceil(len(items) / size)))
    n = max(1, min(n, len(items)))
    # batch k ends at the first file whose cumulative bytes reach (k + 1) / n of the total
    ends = np.searchsorted(np.cumsum(sizes), total * np.arange(1, n + 1) / n - 1e-9 * total)
    batches: list[list[ArchiveFile]] = []
    start = 0
    for end in ends:
        stop = max(int(end) + 1, start + 1)
        if start < len(items):
            batches.append(items[start:stop])
        start = stop
    if start < len(items):
        batches[-1].extend(items[start:])
    return [b for b in batches if b]


def _positive(value: int | None, default: int, name: str) -> int:
    out = default if value is None else value
    if not isinstance(out, int | np.integer) or out < 1:
        raise InputFormatError(f"{name}: {value!r}; expected an integer >= 1.")
    return int(out)


def read_many(
    urls: Sequence[str | ArchiveFile],
    parse_one: Callable[[str], FileResult],
    meta: pd.DataFrame,
    *,
    files_per_task: int | None = None,
    batch_bytes: int | None = None,
    shared: Mapping[str, Any] | None = None,
    parse_bulk: Callable[..., BulkResult] | None = None,
) -> ReadResult:
    """Map a per-file parser lazily over many files, a batch of files per task.

    Parameters
    ----------
    urls : sequence of str or ArchiveFile
        Files to read (with their sizes in bytes when known, for the batching).
    parse_one : callable
        ``parse_one(url) -> FileResult``; an :class:`InputFormatError` it raises becomes
        a file-level quarantine row. Must be picklable (a module-level function or a
        ``functools.partial`` of one) to run on distributed workers.
    meta : pandas.DataFrame
        Empty frame with the accepted table's columns and dtypes; each file's accepted
        rows are conformed to it.
    files_per_task : int, optional
        Fewest files per batch (default :data:`FILES_PER_TASK`); see :func:`plan_batches`.
    batch_bytes : int, optional
        Input bytes per batch, at most (default :data:`BATCH_BYTES`, 128 MiB).
    shared : mapping, optional
        Keyword arguments of ``parse_one`` that every file needs and that are big (a
        metadata table): ``parse_one(url, **shared)``. The graph holds them once, not
        once per batch (:func:`batch_tasks`); they are part of the batches' names.
    parse_bulk : callable, optional
        ``parse_bulk(urls, **shared) -> BulkResult``: reads the files of a batch that it
        can at once (their rows must be the ones ``parse_one`` accepts, none quarantined);
        ``parse_one`` parses the others. Picklable, like ``parse_one``.

    Returns
    -------
    ReadResult
        Lazy accepted rows, quarantine and per-file stats (one row per file), each
        partition the files of one batch in the order given. One task per batch parses its
        files and returns the three tables together (one output, split lazily), so each
        file is parsed once whatever is computed from them; ``batches`` lists them for
        writers that stream them (:mod:`pipeline.ingest`).

    Raises
    ------
    InputFormatError
        When ``urls`` is empty.

    Examples
    --------
    >>> def parse(url):
    ...     rows = pd.DataFrame({"x": [float(len(url))]})
    ...     return FileResult(url, rows, QUARANTINE_META.copy(), rows_read=1)
    >>> meta = pd.DataFrame({"x": pd.Series([], dtype="float64")})
    >>> res = read_many(["a", "bb", "ccc"], parse, meta, files_per_task=2)
    >>> res.accepted.npartitions, res.accepted.compute()["x"].tolist()
    (2, [1.0, 2.0, 3.0])
    """
    if not urls:
        raise InputFormatError("no input file given (the URL list is empty).")
    batches = plan_batches(urls, batch_bytes=batch_bytes, files_per_task=files_per_task)
    n_files = sum(len(b) for b in batches)
    logger.info(
        "%d file(s) (%s) in %d task(s)",
        n_files,
        _human_bytes(sum(f.size or 0 for b in batches for f in b)),
        len(batches),
    )
    shared = dict(shared) if shared else None
    token = dask.base.tokenize(parse_one, meta, shared, parse_bulk)
    jobs = [
        Batch(
            name=f"{i:05d}-" + dask.base.tokenize(token, [(f.url, f.size) for f in b])[:16],
            urls=tuple(f.url for f in b),
            parse_one=parse_one,
            meta=meta,
            shared=shared,
            parse_bulk=parse_bulk,
        )
        for i, b in enumerate(batches)
    ]
    return result_of(jobs)


def result_of(batches: Sequence[Batch]) -> ReadResult:
    """Build the lazy :class:`ReadResult` of batches: one task per batch, split lazily.

    Parameters
    ----------
    batches : sequence of Batch
        The batches, in order (of one or several reads with the same accepted columns).

    Returns
    -------
    ReadResult
        ``accepted``, ``quarantine`` and ``stats`` with one partition per batch.
    """
    parts = batch_tasks(batches, _read_batch, prefix="read-batch", pure=True, nout=3)
    meta = batches[0].meta
    return ReadResult(
        accepted=dd.from_delayed([p[0] for p in parts], meta=meta, verify_meta=False),
        quarantine=dd.from_delayed([p[1] for p in parts], meta=QUARANTINE_META),
        stats=dd.from_delayed([p[2] for p in parts], meta=STATS_META),
        batches=list(batches),
    )


def _read_batch(
    batch: Batch, shared: Mapping[str, Any] | None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return batch.read(shared)


def _human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _parse_batch(
    parse_one: Callable[[str], FileResult],
    urls: Sequence[str],
    meta: pd.DataFrame,
    *,
    parse_bulk: Callable[[Sequence[str]], BulkResult] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    if parse_bulk is not None:
        bulk = parse_bulk(urls)
    else:
        none = np.zeros(len(urls), dtype=bool)
        bulk = BulkResult(none, meta.iloc[:0], none.astype("int64"))
    results = [
        None if ok else _safe_parse(parse_one, url, meta)
        for url, ok in zip(urls, bulk.done, strict=True)
    ]
    n_rows = bulk.rows_read if bulk.table_rows is None else bulk.table_rows
    ends = np.cumsum(np.where(bulk.done, n_rows, 0))  # bulk rows up to each file
    frames: list[pd.DataFrame] = []
    for ok, group in itertools.groupby(range(len(urls)), key=lambda i: bool(bulk.done[i])):
        run = list(group)
        if not ok:
            frames += [results[i].accepted for i in run]
            continue
        start, stop = int(ends[run[0]] - n_rows[run[0]]), int(ends[run[-1]])
        whole = start == 0 and stop == len(bulk.accepted)
        frames.append(bulk.accepted if whole else bulk.accepted.iloc[start:stop])
    frames = [f for f in frames if len(f)]
    accepted = conform(pd.concat(frames, ignore_index=True) if frames else meta.iloc[:0], meta)
    quarantined = [r.quarantine for r in results if r is not None and len(r.quarantine)]
    quarantine = (
        pd.concat(quarantined, ignore_index=True) if quarantined else QUARANTINE_META.copy()
    )
    rows = [
        (url, int(n), int(n), 0) if r is None else _stats_row(r)
        for url, r, n in zip(urls, results, bulk.rows_read, strict=True)
    ]
    return accepted, quarantine, _stats_frame(rows)


def _stats_row(r: FileResult) -> tuple[str, int, int, int]:
    n_q = int((r.quarantine["line"] > 0).sum()) if len(r.quarantine) else 0
    return r.url, r.rows_read, len(r.accepted) if r.rows_accepted is None else r.rows_accepted, n_q


def _stats_frame(rows: list[tuple[str, int, int, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(STATS_META.columns))
    return frame.astype(STATS_META.dtypes.to_dict())
