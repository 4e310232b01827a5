"""Archives as exported: the files in folders, globs, zips (of zips) and ``s3://`` prefixes.

EcoPart and EcoTaxa hand out exports as zips (sometimes zips of zips) holding PAR, ZOO and
CTD files, metadata summaries, images and notes. :func:`list_files` turns any mix of input
URLs into one flat, sorted list of files with their sizes in bytes, so that a reader can
sort out what it reads (and list the rest) and :func:`~pipeline.sources.table.read_many`
can batch the files by bytes:

- a folder (local or an ``s3://bucket/prefix``) is walked recursively;
- a glob pattern is expanded (a folder it matches is walked);
- a ``.zip`` file is opened and its members listed as chained fsspec URLs
  (``zip://member::/data/export.zip``); a member that is itself a zip is opened in turn
  (``zip://a.tsv::zip://inner.zip::/data/export.zip``), as deep as they go;
- any other URL is a file.

Hidden files (``.DS_Store``, ``__MACOSX/``) are skipped and logged at DEBUG.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from pipeline.errors import InputFormatError
from pipeline.io import chain_options

__all__ = ["INVENTORY_META", "ArchiveFile", "inventory_frame", "list_files"]

logger = logging.getLogger(__name__)

#: Columns of an inventory (one row per file found): what a reader did with each file.
INVENTORY_META = pd.DataFrame(
    {
        "file": pd.Series([], dtype=str),
        "size_bytes": pd.Series([], dtype="Int64"),
        "kind": pd.Series([], dtype=str),
        "action": pd.Series([], dtype=str),
    }
)

#: Archive nesting followed at most (a zip inside a zip inside ... ).
_MAX_DEPTH = 8


@dataclass(frozen=True)
class ArchiveFile:
    """One file found in the inputs.

    Attributes
    ----------
    url : str
        fsspec URL that :func:`pipeline.io.read_bytes` opens (chained for zip members).
    size : int or None
        Size in bytes (uncompressed for zip members), None where unknown.
    expanded : bool
        True when found by expanding a folder, a glob or an archive (a reader then reads it
        only when its name says it is of the reader's kind); False when named as is.
    """

    url: str
    size: int | None
    expanded: bool = False

    @property
    def name(self) -> str:
        """Base name of the file (the member's name for a zip member)."""
        head = self.url.partition("::")[0].split("://", 1)[-1]
        return posixpath.basename(head.rstrip("/"))


def list_files(
    urls: str | Iterable[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> list[ArchiveFile]:
    """List every file in folders, globs, zips (zips of zips) and object-store prefixes.

    Parameters
    ----------
    urls : str or iterable of str
        Files, folders, glob patterns, ``.zip`` archives, ``s3://bucket/prefix`` or chained
        fsspec URLs (``zip://member::archive.zip``, kept as given).
    storage_options : mapping, optional
        Passed to fsspec (endpoint, anonymous access); never logged.

    Returns
    -------
    list of ArchiveFile
        One entry per file, in the order the inputs are given, each input's files sorted by
        URL; duplicates dropped.

    Raises
    ------
    InputFormatError
        When a glob pattern matches nothing, a folder or path does not exist, or an archive
        cannot be opened (naming the URL).

    Examples
    --------
    >>> import os, tempfile, zipfile
    >>> d = tempfile.mkdtemp()
    >>> with zipfile.ZipFile(os.path.join(d, "x.zip"), "w") as z:
    ...     z.writestr("a_PAR_raw_1.tsv", "depth\\n")
    >>> _ = open(os.path.join(d, "notes.txt"), "w").write("hi")
    >>> [(f.name, f.size) for f in list_files(d)]
    [('notes.txt', 2), ('a_PAR_raw_1.tsv', 6)]
    """
    urls = [urls] if isinstance(urls, str) else [str(u) for u in urls]
    options = dict(storage_options or {})
    seen: set[str] = set()
    out: list[ArchiveFile] = []
    for url in urls:
        for item in _expand(str(url), options):
            if item.url not in seen:
                seen.add(item.url)
                out.append(item)
    logger.info("%d file(s) found in %d input(s)", len(out), len(urls))
    return out


def inventory_frame(rows: Iterable[tuple[ArchiveFile, str, str]]) -> pd.DataFrame:
    """Build an inventory table from ``(file, kind, action)`` triples.

    Parameters
    ----------
    rows : iterable of (ArchiveFile, str, str)
        Each file, its kind (``"raw PAR export"``, ``"ZOO export"``, ``"unknown"``) and what
        the reader did (``"read"``, ``"metadata"``, ``"not read by this reader"``,
        ``"unknown: not read"``).

    Returns
    -------
    pandas.DataFrame
        :data:`INVENTORY_META` columns.
    """
    frame = pd.DataFrame(
        [(f.url, f.size, kind, action) for f, kind, action in rows],
        columns=list(INVENTORY_META.columns),
    )
    return frame.astype(INVENTORY_META.dtypes.to_dict())


def _expand(url: str, options: dict[str, Any]) -> list[ArchiveFile]:
    if "::" in url:  # a chained URL: a member as given, or a folder inside an archive
        return _expand_chained(url, options)
    fs, path = url_to_fs(url, **options)
    proto = _protocol(url)
    if any(ch in url for ch in "*?["):
        found = fs.glob(path, detail=True)
        if not found:
            raise InputFormatError(f"{url}: the pattern matches no file.")
        items: list[ArchiveFile] = []
        for p, info in sorted(found.items()):
            if info.get("type") == "directory":
                items.extend(_walk(fs, p, proto, options))
            else:
                items.extend(_file_or_zip(proto + _strip(p, proto), info.get("size"), options))
        return [_mark(i) for i in items]
    try:
        is_dir = fs.isdir(path)
    except OSError:
        is_dir = False
    if is_dir:
        return [_mark(i) for i in _walk(fs, path, proto, options)]
    size = _size(fs, path)
    return _file_or_zip(url, size, options)


def _walk(fs: Any, path: str, proto: str, options: dict[str, Any]) -> list[ArchiveFile]:
    found = fs.find(path, detail=True)
    items: list[ArchiveFile] = []
    for p, info in sorted(found.items()):
        if _hidden(p[len(path) :]):
            logger.debug("skipped hidden file %s", p)
            continue
        items.extend(_file_or_zip(proto + _strip(p, proto), info.get("size"), options))
    return items


def _file_or_zip(
    url: str, size: int | None, options: dict[str, Any], depth: int = 0
) -> list[ArchiveFile]:
    if not _is_zip(url):
        return [ArchiveFile(url, None if size is None else int(size))]
    if depth >= _MAX_DEPTH:
        logger.warning("%s: zips nested deeper than %d; not opened", url, _MAX_DEPTH)
        return [ArchiveFile(url, size)]
    try:
        fs, _ = url_to_fs(f"zip://::{url}", **chain_options(f"zip://::{url}", options))
        members = fs.find("", detail=True)
    except Exception as err:  # a corrupt or truncated archive: say which
        raise InputFormatError(
            f"{url}: cannot open the zip archive ({type(err).__name__}: {err}); re-download "
            "or re-export it."
        ) from err
    items: list[ArchiveFile] = []
    for name, info in sorted(members.items()):
        if info.get("type") == "directory" or _hidden(name):
            continue
        items.extend(_file_or_zip(f"zip://{name}::{url}", info.get("size"), options, depth + 1))
    items = [_mark(i) for i in items]
    logger.info("%s: %d file(s) in the archive", url, len(items))
    return items


def _expand_chained(url: str, options: dict[str, Any]) -> list[ArchiveFile]:
    head, _, tail = url.partition("::")
    try:
        fs, path = url_to_fs(url, **chain_options(url, options))
        if fs.isdir(path):
            found = fs.find(path, detail=True)
            proto = head.split("://", 1)[0] + "://"
            return [
                _mark(item)
                for p, info in sorted(found.items())
                if not _hidden(p[len(path) :])
                for item in _file_or_zip(f"{proto}{p}::{tail}", info.get("size"), options)
            ]
        size = fs.size(path)
    except FileNotFoundError as err:
        raise InputFormatError(f"{url}: no such file or folder in the archive.") from err
    except Exception:  # let the reader report it as an unreadable file
        size = None
    return _file_or_zip(url, size, options)


def _mark(item: ArchiveFile) -> ArchiveFile:
    return item if item.expanded else ArchiveFile(item.url, item.size, expanded=True)


def _size(fs: Any, path: str) -> int | None:
    """Return a named file's size: local files only, None when unknown or missing.

    One request per remote file would cost more than it helps; a missing file is
    quarantined by the reader.
    """
    if not isinstance(fs, LocalFileSystem):
        return None
    try:
        return int(fs.size(path))
    except OSError:
        return None


def _is_zip(url: str) -> bool:
    return url.partition("::")[0].lower().endswith(".zip")


def _hidden(path: str) -> bool:
    parts = path.replace("\\", "/").split("/")
    return any(p.startswith(".") or p == "__MACOSX" for p in parts if p)


def _protocol(url: str) -> str:
    return url.split("://", 1)[0] + "://" if "://" in url else ""


def _strip(path: str, proto: str) -> str:
    return path[len(proto) :] if proto and path.startswith(proto) else path
