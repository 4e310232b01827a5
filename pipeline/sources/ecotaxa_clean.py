"""The fast path of the EcoTaxa reader: TSVs read with typed columns, in C.

Developer note
--------------
:func:`pipeline.sources.ecotaxa._parse_file` first asks :func:`_read_clean` for the
file (or byte-range block): pyarrow's CSV parser reads only the columns the converters
of :mod:`pipeline.sources.ecotaxa_columns` use, the number columns straight into
float64 and the text columns (ids, names, date and time, status) as strings. The other
columns are split but never converted. The converters and checks then run unchanged on
a :class:`_TypedRows` (the :class:`~pipeline.sources.ecotaxa_columns._Rows` of typed
columns), so a row refused for its value (a latitude of 95, an unknown status, depths
in the wrong order) is quarantined as by the careful path, with its file, line, column
and text.

A number column is converted from its text by the careful ``to_float``, as on the
careful path, where a cell is not a plain number: where one is empty, ``nan`` or a
missing-value code (9999…), that column is read again as text; where one is text, a
decimal comma or degrees and minutes, every column is read as text (still only the
columns used). A converter asking for a column read otherwise (the repeats of an
``object_id`` are compared as text) gets its text, read then. What the typed read cannot
split as the careful path does goes to that path
(:func:`~pipeline.sources.table.tokenize`, every cell as text): a file that is not
ASCII or UTF-8, a lone carriage return, a line with another number of fields, a blank
line between lines. The typed read parses with the parser of the careful path's fast
tokenizer (pyarrow's) and converts with the same float parser as its ``to_float``
(pyarrow's), so the tables are the careful path's, value for value.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from pipeline.sources.ecotaxa_columns import (
    _LAT_COLUMNS,
    _LON_COLUMNS,
    _NUMBER_MISSING,
    _SAME_OBJECT,
    _feature_name,
    _Rows,
)
from pipeline.sources.table import RawTable, _clean_table, _dedupe, _split

__all__: list[str] = []

#: Columns the converters read as text (``_Rows.text``).
_TEXT = (
    "object_id",
    "sample_id",
    "acq_id",
    "object_annotation_category",
    "object_annotation_hierarchy",
    "object_annotation_status",
    "object_date",
    "object_time",
    "img_file_name",
    "acq_instrument",
)
#: Metadata number columns (``_Rows.number`` with the missing-value codes).
_METADATA = (
    *_LAT_COLUMNS,
    *_LON_COLUMNS,
    "object_depth_min",
    "object_depth_max",
    "sample_tot_vol",
    "sample_volconc",
    "acq_sub_part",
    "process_pixel",
    "process_particle_pixel_size_mm",
    "process_particle_pixel_size_um",
    "process_particle_pixel_size_µm",
    "acq_pixel",
    "acq_subsample_fraction",
)
#: Feature columns read whatever the features asked for (sizes come from them).
_SIZES = ("object_area", "object_esd")
#: Read as text together when one of them is asked for (the repeats of an object_id).
_REPEATS = (*_SAME_OBJECT, "img_rank")
_CODES = [float(m) for m in _NUMBER_MISSING if m.isdigit()]
#: Encodings in which ASCII text is its own bytes (the others: the careful path).
_ASCII_COMPATIBLE = ("utf-8", "ascii", "iso8859-1", "cp1252")


class _Source:
    """The bytes of a file and how to read columns of them with pyarrow."""

    def __init__(self, data: bytes, n_fields: int, skip: int, sep: str) -> None:
        self.data, self.n_fields, self.skip, self.sep = data, n_fields, skip, sep

    def read(self, types: dict[int, pa.DataType]) -> pa.Table:
        """Read the columns ``types`` (by position); raises ``pa.ArrowInvalid``.

        Empty cells of number columns are null; text cells are never null.
        """
        names = [str(i) for i in range(self.n_fields)]
        return pacsv.read_csv(
            pa.BufferReader(self.data),
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=self.skip, use_threads=False
            ),
            parse_options=pacsv.ParseOptions(delimiter=self.sep, newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types={str(i): t for i, t in types.items()},
                include_columns=[str(i) for i in types],
                null_values=[""],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )

    def texts(self, positions: Iterable[int]) -> list[pd.Series]:
        """Read the columns at ``positions`` as text, one Series each."""
        positions = list(positions)
        table = self.read(dict.fromkeys(positions, pa.string()))
        return [table.column(str(i)).to_pandas() for i in positions]


class _TypedRows(_Rows):
    """The :class:`_Rows` of a typed read: clean number columns as float64, others as text.

    ``raw.cells`` holds the columns read as text (and ``_line``); ``floats`` the number
    columns read as numbers, by their name in the file, each without NaN or null and,
    where ``coded``, without a missing-value code. A column asked for as text and not
    read so is read then from ``source``.
    """

    def __init__(
        self,
        raw: RawTable,
        names: Sequence[str],
        source: _Source,
        floats: dict[str, np.ndarray],
        coded: set[str],
    ) -> None:
        self.raw, self.n = raw, len(raw.cells)
        self.columns = {}
        for name in names:
            if name != "_line":
                self.columns.setdefault(name.lower(), name)
        self.names = list(names)
        self.positions = {name: i for i, name in enumerate(names)}
        self.source, self.floats, self.coded = source, floats, coded

    def shifted(self, by: int) -> _TypedRows:
        """Return the rows numbered ``by`` lines further (a block of a file)."""
        if not by:
            return self
        return _TypedRows(self.raw.shifted(by), self.names, self.source, self.floats, self.coded)

    def text(self, name: str) -> pd.Series:
        if name in self.columns and self.columns[name] not in self.raw.cells:
            wanted = _REPEATS if name in _REPEATS else (name,)
            keys = [self.columns[k] for k in wanted if k in self.columns]
            keys = [k for k in keys if k not in self.raw.cells]
            texts = self.source.texts(self.positions[k] for k in keys)
            for key, values in zip(keys, texts, strict=True):
                self.raw.cells[key] = values
        return super().text(name)

    def numbers(
        self, name: str, *, missing: Sequence[str] = _NUMBER_MISSING
    ) -> tuple[np.ndarray, np.ndarray, pd.Series]:
        key = self.columns[name]
        if key in self.floats and (key in self.coded or not any(m.isdigit() for m in missing)):
            return self.floats[key], np.zeros(self.n, dtype=bool), pd.Series([], dtype=str)
        return super().numbers(name, missing=missing)


def _read_clean(
    data: bytes,
    url: str,
    *,
    encoding: str | None,
    skip_type_row: bool,
    features: Sequence[str],
    sep: str = "\t",
) -> _TypedRows | None:
    """Read an EcoTaxa TSV with typed columns; None when the careful path must split it.

    Parameters
    ----------
    data : bytes
        The file, or its header line and a byte-range block (byte order mark removed).
    url : str
        The file.
    encoding : str, optional
        As :func:`~pipeline.sources.ecotaxa.read_ecotaxa`'s.
    skip_type_row : bool
        Whether an import's type row may follow the header (the start of a file).
    features : sequence of str
        The feature names asked for.
    sep : str
        Field separator.

    Returns
    -------
    _TypedRows or None
        The rows, numbered from line 2 (3 after a type row) as in the file's start;
        None when the file needs the careful path (see the module's note).
    """
    if not _FAST_PATH:
        return None
    enc = _encoding(data, encoding)
    if enc is None or b"\x00" in data[:4096]:
        return None
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
        return None  # a lone carriage return: the careful path splits as it does
    n = _lines(data)
    header_text = data[: data.find(b"\n")].rstrip(b"\r").decode(enc)
    if n < 2 or not header_text.strip():
        return None
    written = [f.strip() for f in _split(header_text, sep)]
    header = _dedupe(written)  # the names of the careful path's cells
    try:
        skip = 2 if skip_type_row and _type_row(data, len(header), sep) else 1
    except (pa.ArrowInvalid, ValueError):
        return None
    columns: dict[str, int] = {}
    for i, name in enumerate(header):
        if name != "_line":
            columns.setdefault(name.lower(), i)
    text = [columns[k] for k in _TEXT if k in columns]
    coded = {columns[k] for k in _METADATA if k in columns}
    wanted = (*_feature_keys(columns, features), *_SIZES)
    numbers = sorted(coded | {columns[k] for k in wanted if k in columns})
    typed = not set(text) & set(numbers)  # else a column is text and a number (features=["date"])
    source = _Source(data, len(header), skip, sep)
    try:
        table, typed = _read_typed(source, text, numbers, as_numbers=typed)
    except (pa.ArrowInvalid, ValueError):
        return None  # a field count, a line end inside quotes…
    if table.num_rows != n - skip:
        return None  # a blank line, a line end inside quotes
    floats: dict[str, np.ndarray] = {}
    unclean = []
    for i in numbers if typed else []:
        column = table.column(str(i))
        values = None if column.null_count else column.to_numpy()
        if values is None or np.isnan(values).any():
            unclean.append(i)  # an empty cell or 'nan': the careful to_float
        elif i in coded and np.isin(values, _CODES).any():
            unclean.append(i)  # a missing-value code (9999…): the careful to_float
        else:
            floats[header[i]] = values
    as_text = list(dict.fromkeys(text if typed else [*text, *numbers]))
    cells = table.select([str(i) for i in as_text]).to_pandas()
    cells.columns = [header[i] for i in as_text]
    if unclean:
        for i, values in zip(unclean, source.texts(unclean), strict=True):
            cells[header[i]] = values
    raw = _clean_table(url, written, cells, data, enc, first=skip + 1, n_lines=n)
    return _TypedRows(raw, header, source, floats, {header[i] for i in coded})


def _read_typed(
    source: _Source, text: list[int], numbers: list[int], *, as_numbers: bool
) -> tuple[pa.Table, bool]:
    """Read the text and the number columns; all as text where a number cell is text.

    Returns the table and whether its number columns are numbers.
    """
    types = dict.fromkeys(text, pa.string())
    if numbers and as_numbers:
        try:
            return source.read(types | dict.fromkeys(numbers, pa.float64())), True
        except pa.ArrowInvalid as err:
            if "conversion error" not in str(err):
                raise  # not a number cell: a line the careful path must split
    return source.read(types | dict.fromkeys(numbers, pa.string())), False


def _type_row(data: bytes, n_fields: int, sep: str) -> bool:
    """Tell whether the careful path skips line 2 as an import's type row (``[t]``, ``[f]``).

    Raises ``pa.ArrowInvalid`` when line 2 cannot be split.
    """
    end = data.find(b"\n", data.find(b"\n") + 1)
    second = data[: end + 1 if end >= 0 else len(data)]
    if b"[" not in second[second.find(b"\n") :]:
        return False
    first = _Source(second, n_fields, 1, sep).texts([0])[0]
    return bool(len(first)) and str(first.iloc[0]).strip().startswith("[")


def _encoding(data: bytes, encoding: str | None) -> str | None:
    """Return the careful path's encoding if pyarrow reads the bytes as it does, else None."""
    name = "utf-8" if encoding is None else codecs.lookup(encoding).name
    if name not in _ASCII_COMPATIBLE:
        return None
    if data.isascii():
        return encoding or "utf-8"
    if name != "utf-8":
        return None  # latin-1 text: the careful path decodes it
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return encoding or "utf-8"


def _lines(data: bytes) -> int:
    """Lines of ``data`` up to its last non-blank one."""
    n = data.count(b"\n") + 1
    end = len(data)
    while n:
        start = data.rfind(b"\n", 0, end) + 1
        if data[start:end].strip():
            break
        n, end = n - 1, start - 1
    return n


def _feature_keys(columns: dict[str, int], features: Sequence[str]) -> list[str]:
    """Return the columns (lower case) of the features, as ``_features`` finds them."""
    by_name: dict[str, str] = {}
    for key in columns:
        if key.startswith("object_"):
            by_name.setdefault(_feature_name(key), key)
    return [by_name[f] for f in features if f in by_name]


#: Off in tests that compare with the careful path.
_FAST_PATH = True
