"""The one output store: a folder URL every writer writes through, each file whole.

:class:`OutputStore` is a folder (a local path or an fsspec URL, ``./out`` as
``s3://bucket/run``) whose files are written whole or not at all
(:meth:`OutputStore.open_atomic`), on a local disk as on an object store. Public writers
accept a URL or a store and normalise it once with :func:`as_store`; a writer of one
file given by its URL splits it with :func:`file_in_store`. Storage options come from
the caller or from the environment and are never logged. Inputs are read by URL with
:func:`pipeline.io.read_bytes`, not through a store.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import posixpath
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

import fsspec
import numpy as np
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from pipeline.errors import InputFormatError

__all__ = [
    "OutputStore",
    "as_store",
    "file_in_store",
]

logger = logging.getLogger(__name__)


class OutputStore:
    """One output folder (local path or fsspec URL) that every writer writes through.

    Names are paths relative to the folder, ``/``-separated (``"model/card.json"``). Each
    write goes through :meth:`open_atomic` and is **whole or not at all**: on a local
    disk into a temporary file beside the target, then renamed over it (``os.replace``);
    on an object store (``s3://``, ``gs://``, …) as one PUT of the whole object
    (``pipe_file``). A reader never sees half a file, and an interrupted write leaves the
    previous version (or nothing). Folders are created as needed.

    A store pickles as its URL and storage options (the filesystem is made again where it
    is unpickled), so it can travel to Dask workers.

    Parameters
    ----------
    url : str or path-like
        The folder: a local path (``./out``) or an fsspec URL (``s3://bucket/run``).
    storage_options : mapping, optional
        Passed to the fsspec filesystem (e.g. ``{"client_kwargs": {"endpoint_url": …}}``);
        credentials belong in the environment. Never logged nor shown by ``repr``.

    Attributes
    ----------
    url : str
        The folder URL without a trailing ``/``.
    storage_options : dict
        The storage options given.

    See Also
    --------
    as_store : a URL or a store, as a store (what public writers call once).
    file_in_store : the store and name of a single file's URL.
    pipeline.io.read_bytes : reading any input URL (readers do not use a store).

    Examples
    --------
    >>> import tempfile
    >>> store = OutputStore(tempfile.mkdtemp())
    >>> store.write_json("_state/targets.json", {"key": "ab12", "counts": {"rows": 3}})
    >>> store.read_json("_state/targets.json")["counts"]
    {'rows': 3}
    >>> store.read_bytes("_state/targets.json").splitlines()[:2]
    [b'{', b'  "key": "ab12",']
    >>> store.exists("_state/targets.json"), store.exists("metrics.json")
    (True, False)
    >>> store.path("_state/targets.json") == store.url + "/_state/targets.json"
    True
    >>> store.listdir("_state"), store.listdir("nothing/here")
    (['targets.json'], [])
    >>> store.sub("model").path("card.json") == store.path("model/card.json")
    True
    """

    def __init__(
        self, url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
    ) -> None:
        text = os.fspath(url)
        self.url = text.rstrip("/") or text
        self.storage_options = dict(storage_options or {})
        self._fs: Any = None
        self._root = ""

    def __repr__(self) -> str:
        """Show the URL only (storage options may hold secrets)."""
        return f"{type(self).__name__}({self.url!r})"

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the URL and storage options, not the filesystem."""
        return {"url": self.url, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild from :meth:`__getstate__` (the filesystem is made on first use)."""
        self.__init__(state["url"], storage_options=state["storage_options"])  # type: ignore[misc]

    # ------------------------------------------------------------------ addressing

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The fsspec filesystem of the folder (made on first use)."""
        if self._fs is None:
            self._fs, root = url_to_fs(self.url, **self.storage_options)
            self._root = root.rstrip("/") or root
        return self._fs

    def _full(self, name: str = "") -> str:
        """Filesystem path of ``name`` (the folder itself when empty)."""
        _ = self.fs  # sets _root
        name = name.strip("/")
        return f"{self._root}/{name}" if name else self._root

    @property
    def _is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def path(self, name: str = "") -> str:
        """Return the full URL of ``name`` in the store (the folder's URL when empty).

        Parameters
        ----------
        name : str
            Relative path, ``/``-separated.

        Returns
        -------
        str
            ``url/name``, to hand to code that takes a URL (zarr, xarray, messages).
        """
        name = name.strip("/")
        return f"{self.url}/{name}" if name else self.url

    def sub(self, name: str) -> OutputStore:
        """Return the store of the sub-folder ``name`` (same storage options).

        Parameters
        ----------
        name : str
            Relative path of the sub-folder.

        Returns
        -------
        OutputStore
        """
        return OutputStore(self.path(name), storage_options=self.storage_options)

    # ------------------------------------------------------------------ folders

    def exists(self, name: str = "") -> bool:
        """Tell whether a file or folder ``name`` exists in the store.

        Parameters
        ----------
        name : str
            Relative path (the folder itself when empty).

        Returns
        -------
        bool
        """
        return bool(self.fs.exists(self._full(name)))

    def listdir(self, name: str = "") -> list[str]:
        """List the names directly inside the folder ``name``, sorted (``[]`` when absent).

        The listing is read afresh (other processes may have written there).

        Parameters
        ----------
        name : str
            Relative path of a folder (the store itself when empty).

        Returns
        -------
        list of str
            Base names of the files and folders there.
        """
        full = self._full(name)
        self.fs.invalidate_cache(full)
        try:
            entries = self.fs.ls(full, detail=False)
        except FileNotFoundError:
            return []
        names = {posixpath.basename(str(e).rstrip("/")) for e in entries}
        return sorted(n for n in names if n and str(n) != posixpath.basename(full))

    def makedirs(self, name: str = "") -> None:
        """Create the folder ``name`` (and its parents) when missing.

        Parameters
        ----------
        name : str
            Relative path (the store itself when empty).
        """
        self.fs.makedirs(self._full(name), exist_ok=True)

    def remove(self, name: str) -> None:
        """Remove the file or folder ``name`` (with its content); nothing when absent.

        Parameters
        ----------
        name : str
            Relative path; must not be empty (a store does not remove itself).

        Raises
        ------
        ValueError
            When ``name`` is empty.
        """
        if not name.strip("/"):
            raise ValueError(f"{self.url}: remove() needs a name inside the store, got {name!r}.")
        full = self._full(name)
        if self.fs.exists(full):
            self.fs.rm(full, recursive=True)

    # ------------------------------------------------------------------ reading

    def read_bytes(self, name: str) -> bytes:
        """Read the whole file ``name``.

        Parameters
        ----------
        name : str
            Relative path.

        Returns
        -------
        bytes

        Raises
        ------
        InputFormatError
            When the file is missing (names its URL).
        """
        try:
            return bytes(self.fs.cat_file(self._full(name)))
        except FileNotFoundError as err:
            raise InputFormatError(
                f"{self.path(name)}: file not found in the output store; write it first "
                "(run the step or command that makes it)."
            ) from err

    def read_text(self, name: str, *, encoding: str = "utf-8") -> str:
        """Read the file ``name`` as text (see :meth:`read_bytes`)."""
        return self.read_bytes(name).decode(encoding)

    def read_json(self, name: str) -> Any:
        """Read the JSON file ``name`` (see :meth:`read_bytes`)."""
        return json.loads(self.read_bytes(name))

    def read_parquet(self, name: str) -> Any:
        """Read the parquet file ``name`` into a pandas DataFrame (see :meth:`read_bytes`)."""
        import pandas as pd

        return pd.read_parquet(io.BytesIO(self.read_bytes(name)))

    # ------------------------------------------------------------------ writing

    @contextlib.contextmanager
    def open_atomic(self, name: str) -> Iterator[IO[bytes]]:
        """Open ``name`` for writing, whole or not at all (every write of the store).

        On a local disk the data goes to a hidden temporary file in the same folder
        (``.<name>.tmp-<hex>``), renamed over ``name`` (``os.replace``) when the block
        ends; on any other filesystem it is collected in memory and written as one object
        (``pipe_file``: one PUT on an object store). When the block raises, nothing is
        written (the temporary file is removed) and the error propagates.

        Parameters
        ----------
        name : str
            Relative path of the file.

        Yields
        ------
        binary file object
            Where to write the content.

        Examples
        --------
        >>> import tempfile
        >>> store = OutputStore(tempfile.mkdtemp())
        >>> with store.open_atomic("a.txt") as f:
        ...     _ = f.write(b"whole")
        >>> try:
        ...     with store.open_atomic("b.txt") as f:
        ...         _ = f.write(b"half")
        ...         raise RuntimeError("interrupted")
        ... except RuntimeError:
        ...     pass
        >>> store.listdir()
        ['a.txt']
        """
        full = self._full(name)
        parent = posixpath.dirname(full)
        if self._is_local:
            os.makedirs(parent, exist_ok=True)
            tmp = posixpath.join(parent, f".{posixpath.basename(full)}.tmp-{uuid.uuid4().hex}")
            try:
                with open(tmp, "wb") as f:
                    yield f
                os.replace(tmp, full)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(tmp)
                raise
        else:
            buf = io.BytesIO()
            yield buf
            self.fs.makedirs(parent, exist_ok=True)
            self.fs.pipe_file(full, buf.getvalue())
        logger.debug("wrote %s", self.path(name))

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write ``data`` as the file ``name``, whole or not at all (:meth:`open_atomic`).

        Parameters
        ----------
        name : str
            Relative path.
        data : bytes
            The whole content.
        """
        with self.open_atomic(name) as f:
            f.write(data)

    def write_text(self, name: str, text: str, *, encoding: str = "utf-8") -> None:
        """Write ``text`` as the file ``name`` (see :meth:`write_bytes`).

        Parameters
        ----------
        name : str
            Relative path.
        text : str
            The whole content.
        encoding : str
            Text encoding.
        """
        self.write_bytes(name, text.encode(encoding))

    def write_json(
        self,
        name: str,
        obj: Any,
        *,
        indent: int | None = 2,
        sort_keys: bool = False,
        default: Callable[[Any], Any] | None = None,
        newline: bool = True,
    ) -> None:
        """Write ``obj`` as the JSON file ``name`` (see :meth:`write_bytes`).

        Parameters
        ----------
        name : str
            Relative path.
        obj : object
            JSON-serialisable value.
        indent : int or None
            Indentation (``None``: one line).
        sort_keys : bool
            Sort the keys of every mapping.
        default : callable, optional
            Called for values JSON cannot write; by default numpy scalars and arrays
            become numbers and lists, anything else its ``str``.
        newline : bool
            End the file with a line end.

        Examples
        --------
        >>> import tempfile
        >>> store = OutputStore(tempfile.mkdtemp())
        >>> store.write_json("a.json", {"b": 1, "a": [1, 2]}, indent=None, sort_keys=True,
        ...                  newline=False)
        >>> store.read_bytes("a.json")
        b'{"a": [1, 2], "b": 1}'
        """
        text = json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default or _json_default)
        self.write_text(name, text + ("\n" if newline else ""))

    def write_parquet(self, name: str, frame: Any) -> None:
        """Write a pandas DataFrame as the parquet file ``name``, without its index.

        Parameters
        ----------
        name : str
            Relative path.
        frame : pandas.DataFrame
            The table.

        Examples
        --------
        >>> import tempfile
        >>> import pandas as pd
        >>> store = OutputStore(tempfile.mkdtemp())
        >>> store.write_parquet("t.parquet", pd.DataFrame({"depth_m": [2.5, 7.5]}))
        >>> store.read_parquet("t.parquet")["depth_m"].tolist()
        [2.5, 7.5]
        """
        with self.open_atomic(name) as f:
            frame.to_parquet(f, index=False)

    def write_parquet_dataset(self, name: str, frame: Any) -> Any:
        """Return the lazy write of a dask DataFrame as the parquet folder ``name``.

        One part file per partition, written by the tasks that compute the partitions
        (compute it together with what else needs them: each partition is computed
        once). The folder is replaced; it is not atomic as a whole, so a step counts it
        done only once its state is written after it.

        Parameters
        ----------
        name : str
            Relative path of the folder (``"quarantine.parquet"``).
        frame : dask.dataframe.DataFrame
            The table (its index is not written).

        Returns
        -------
        dask collection
            Compute it (``dask.compute``) to write.
        """
        return frame.to_parquet(
            self.path(name),
            storage_options=self.storage_options,
            write_index=False,
            overwrite=True,
            compute=False,
        )


def _json_default(obj: Any) -> Any:
    """JSON form of numpy scalars and arrays; ``str`` of anything else."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def as_store(
    out: str | os.PathLike[str] | OutputStore,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> OutputStore:
    """Return ``out`` as an :class:`OutputStore` (the one place writers normalise it).

    Parameters
    ----------
    out : str, path-like or OutputStore
        An output folder URL, or a store (returned as is).
    storage_options : mapping, optional
        For a URL: passed to the new store. A store keeps its own.

    Returns
    -------
    OutputStore

    Raises
    ------
    TypeError
        When ``out`` is neither a URL nor a store.

    Examples
    --------
    >>> as_store("s3://bucket/run/")
    OutputStore('s3://bucket/run')
    >>> store = OutputStore("out")
    >>> as_store(store) is store
    True
    """
    if isinstance(out, OutputStore):
        return out
    if isinstance(out, str | os.PathLike):
        return OutputStore(out, storage_options=storage_options)
    raise TypeError(
        f"expected an output folder URL (str) or an OutputStore, got {type(out).__name__}: "
        f"{out!r}. Pass e.g. 'out/run', 's3://bucket/run' or OutputStore('out/run')."
    )


def file_in_store(
    url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> tuple[OutputStore, str]:
    """Split a file's URL into the store of its folder and its name there.

    For writers of one file given by its URL (a plate PNG, a model JSON).

    Parameters
    ----------
    url : str or path-like
        The file's local path or fsspec URL.
    storage_options : mapping, optional
        Passed to the store.

    Returns
    -------
    (OutputStore, str)

    Examples
    --------
    >>> file_in_store("s3://bucket/types/model.json")
    (OutputStore('s3://bucket/types'), 'model.json')
    >>> file_in_store("plate.png")
    (OutputStore('.'), 'plate.png')
    """
    text = os.fspath(url)
    folder, _, name = text.rstrip("/").rpartition("/")
    if not folder:
        folder = "/" if text.startswith("/") else "."
    return OutputStore(folder, storage_options=storage_options), name
