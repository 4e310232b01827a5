"""The one way oceanfields opens files: fsspec URLs.

Local paths, ``s3://bucket/key``, ``zip://member::/path/archive.zip``, ``.gz`` files
(compression inferred from the name) and any other fsspec protocol share one code
path. Storage options (endpoint, credentials) come from the caller or from the
environment and the user's fsspec/s3 configuration; they are never logged.

Readers open URLs with :func:`read_bytes` (and the sources' own readers); globs expand
with :func:`expand_urls`, relative paths inside an archive resolve with
:func:`join_under` and :func:`parent_url`. Every writer writes through the one output
store, :class:`pipeline.store.OutputStore`.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from pipeline.errors import InputFormatError

__all__ = [
    "chain_options",
    "expand_urls",
    "join_under",
    "parent_url",
    "read_bytes",
    "url_exists",
]

logger = logging.getLogger(__name__)


def read_bytes(
    url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    first_line: bool = False,
) -> bytes:
    """Read a whole file (or its first line) from any fsspec URL, decompressing by suffix.

    Parameters
    ----------
    url : str
        Local path or fsspec URL (``s3://…``, ``zip://member::archive.zip``,
        ``zip://a.tsv::zip://inner.zip::outer.zip``, ``file.tsv.gz``).
    storage_options : mapping, optional
        Passed to the fsspec filesystem (e.g. ``{"client_kwargs": {"endpoint_url": …}}``).
    first_line : bool
        Read only up to the first line end (a header), not the whole file.

    Returns
    -------
    bytes
        The file's (decompressed) content, or its first line with its line end.

    Raises
    ------
    InputFormatError
        When the file does not exist or cannot be opened or decompressed (a missing
        member, a corrupt archive, a truncated ``.gz``); names the URL.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> _ = open(path, "w").write("depth\\n2.5\\n")
    >>> read_bytes(path)
    b'depth\\n2.5\\n'
    >>> read_bytes(path, first_line=True)
    b'depth\\n'
    """
    try:
        with fsspec.open(
            url, "rb", compression="infer", **chain_options(url, storage_options)
        ) as f:
            return f.readline() if first_line else f.read()
    except FileNotFoundError as err:
        raise InputFormatError(
            f"{url}: file not found. Check the path or URL (and the storage options for "
            "remote stores)."
        ) from err
    except Exception as err:  # any fsspec/archive/codec failure: one clear error
        hint = (
            " For a file inside nested zips chain the members: "
            "zip://a.tsv::zip://inner.zip::outer.zip."
            if "zip" in url
            else ""
        )
        raise InputFormatError(
            f"{url}: cannot read the file ({type(err).__name__}: {err}). A truncated or "
            f"corrupt compressed file reads like this; re-export or re-download it.{hint}"
        ) from err


def chain_options(url: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return storage options as fsspec wants them for ``url``, chained URLs included.

    For ``zip://member::s3://bucket/a.zip`` fsspec gives plain options to the outermost
    filesystem (``zip``); the object store's options must be keyed by its protocol.

    Parameters
    ----------
    url : str
        A plain or chained fsspec URL.
    storage_options : mapping, optional
        Options of the filesystem that holds the data (the innermost of a chain).

    Returns
    -------
    dict
        ``storage_options`` for a plain URL; ``{protocol: storage_options}`` for a chain
        (nothing for a local archive; as given when already keyed by the protocol).

    Examples
    --------
    >>> chain_options("zip://a.tsv::s3://b/x.zip", {"anon": True})
    {'s3': {'anon': True}}
    >>> chain_options("s3://b/a.tsv", {"anon": True})
    {'anon': True}
    """
    options = dict(storage_options or {})
    if "::" not in url or not options:
        return options
    last = url.rsplit("::", 1)[-1]
    protocol = last.split("://", 1)[0] if "://" in last else "file"
    if protocol in ("file", "local") or protocol in options:
        return options if protocol in options else {}
    return {protocol: options}


def url_exists(url: str, *, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Tell whether a file exists at an fsspec URL.

    Parameters
    ----------
    url : str
        Local path or fsspec URL.
    storage_options : mapping, optional
        Passed to the fsspec filesystem.

    Returns
    -------
    bool
        True when the URL names an existing file.

    Examples
    --------
    >>> url_exists("/definitely/not/here.png")
    False
    """
    fs, path = url_to_fs(url, **dict(storage_options or {}))
    try:
        return bool(fs.isfile(path))
    except (OSError, ValueError):
        return False


def expand_urls(
    urls: str | Iterable[str], *, storage_options: Mapping[str, Any] | None = None
) -> list[str]:
    """Expand glob patterns in one or many URLs into a sorted list of file URLs.

    Parameters
    ----------
    urls : str or iterable of str
        URLs or paths, possibly with ``*``/``?``/``[...]`` glob patterns.
    storage_options : mapping, optional
        Passed to the fsspec filesystem.

    Returns
    -------
    list of str
        One URL per file, protocol kept (``s3://…`` stays ``s3://…``), in the order given,
        each pattern's matches sorted.

    Raises
    ------
    InputFormatError
        When a pattern matches no file.
    """
    if isinstance(urls, str):
        urls = [urls]
    out: list[str] = []
    for url in urls:
        if not any(ch in url for ch in "*?[") or "::" in url:
            out.append(url)
            continue
        fs, _ = url_to_fs(url, **dict(storage_options or {}))
        matches = sorted(fs.glob(url))
        if not matches:
            raise InputFormatError(f"{url}: the pattern matches no file.")
        out.extend(_with_protocol(url, m) for m in matches)
    logger.debug("expanded %d pattern(s) into %d file(s)", len(list(urls)), len(out))
    return out


def _with_protocol(pattern: str, path: str) -> str:
    if "://" in pattern and "://" not in path:
        return pattern.split("://", 1)[0] + "://" + path
    return path


def join_under(root_url: str, relative: str) -> str | None:
    """Join a relative path to a root URL, refusing any path that escapes the root.

    EcoTaxa TSVs name their images relative to the TSV's folder. A path that is
    absolute, carries a protocol, or climbs out of the root with ``..`` is refused
    (``None``), so a crafted TSV cannot make the pipeline read arbitrary files.

    Parameters
    ----------
    root_url : str
        Folder URL or path (e.g. the folder of the TSV).
    relative : str
        The path found in the data (``img_file_name``), ``/`` or ``\\`` separated.

    Returns
    -------
    str or None
        The joined URL, or None when ``relative`` would escape ``root_url``.

    Examples
    --------
    >>> join_under("s3://bucket/export", "images/copepoda/1_0.jpg")
    's3://bucket/export/images/copepoda/1_0.jpg'
    >>> join_under("/data/export", "../../etc/passwd") is None
    True
    >>> join_under("/data/export", "/etc/passwd") is None
    True
    >>> join_under("zip://sub::/data/a.zip", "img/1.png")
    'zip://sub/img/1.png::/data/a.zip'
    """
    rel = relative.replace("\\", "/").strip()
    if not rel or rel.startswith("/") or "://" in rel or "::" in rel or ":" in rel[:3]:
        return None
    norm = posixpath.normpath(rel)
    if norm == ".." or norm.startswith("../") or norm == ".":
        return None
    head, sep, tail = root_url.partition("::")
    protocol, has_protocol, folder = head.rpartition("://")
    folder = folder.rstrip("/")
    return f"{protocol}{has_protocol}{folder + '/' if folder else ''}{norm}{sep}{tail}"


def parent_url(url: str) -> str:
    """Return the folder URL of a file URL, keeping chained (``zip://…::``) URLs intact.

    Parameters
    ----------
    url : str
        A file URL or path.

    Returns
    -------
    str
        The containing folder.

    Examples
    --------
    >>> parent_url("s3://b/run/export.tsv")
    's3://b/run'
    >>> parent_url("zip://sub/ecotaxa_x.tsv::/data/a.zip")
    'zip://sub::/data/a.zip'
    """
    head, sep, tail = url.partition("::")
    protocol, has_protocol, path = head.rpartition("://")
    parent = path.rsplit("/", 1)[0] if "/" in path else ("" if has_protocol else ".")
    return f"{protocol}{has_protocol}{parent}{sep}{tail}"
