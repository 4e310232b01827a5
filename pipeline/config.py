"""The one config loader: YAML files and mappings into the frozen config dataclasses.

Every step owns a frozen ``*Config`` dataclass whose defaults are the only defaults
(style.md). This module turns a YAML section into such a dataclass: unknown keys are
errors that list the valid ones, YAML lists become the tuples the dataclasses hold, and
every error names the file and the dotted key (``run.yaml: split.blok_deg: unknown key;
valid: block_deg, ...``).

The ``check_*`` helpers are the one dialect of the configs' ``__post_init__`` checks: each
raises a :class:`~pipeline.errors.ConfigError` shaped ``key: <value!r>[ problem];
<what is expected>[; <the fix>].``, built by :func:`config_error`, which also records the
key on the error. A step config names its keys in full (``split.n_folds``); a config
nested in another section (the cluster files' ``adaptive``, ``resources.limits``) names
them relative to its own section (``maximum``). :func:`build_config` then prefixes the
file, and the section where the key is relative, so every config error reads
``run.yaml: split.n_folds: 1; expected an integer >= 2.``
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import yaml

from pipeline.errors import ConfigError, InputFormatError
from pipeline.io import read_bytes

__all__ = [
    "build_config",
    "check_choice",
    "check_count",
    "check_positive",
    "check_range",
    "check_strings",
    "config_error",
    "read_yaml",
]

T = TypeVar("T")


def read_yaml(source: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """Read a YAML file (or take a mapping) and return it with a label for errors.

    Parameters
    ----------
    source : path or mapping
        A YAML file holding a mapping (local path or fsspec URL such as
        ``s3://bucket/run.yaml``, read with :func:`pipeline.io.read_bytes`; storage
        options from the environment), or the mapping itself.

    Returns
    -------
    (dict, str)
        The document and where it came from (the path or URL, or ``"<mapping>"``).

    Raises
    ------
    ConfigError
        When the file is missing or unreadable, is not YAML, or does not hold a mapping.

    Examples
    --------
    >>> read_yaml({"split": {"n_folds": 3}})
    ({'split': {'n_folds': 3}}, '<mapping>')
    """
    if isinstance(source, Mapping):
        return dict(source), "<mapping>"
    where = os.fspath(source)
    try:
        doc = yaml.safe_load(read_bytes(where).decode("utf-8"))
    except InputFormatError as err:
        if isinstance(err.__cause__, FileNotFoundError):
            raise ConfigError(f"{where}: file not found.") from err
        raise ConfigError(str(err)) from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML ({err}).") from err
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}: expected a mapping at the top, got {type(doc).__name__}.")
    return dict(doc), where


def build_config(
    cls: type[T],
    values: Mapping[str, Any] | None,
    *,
    where: str,
    section: str,
    converters: Mapping[str, Callable[[Any], Any]] | None = None,
) -> T:
    """Build a frozen config dataclass from a mapping, checking every key.

    Parameters
    ----------
    cls : dataclass type
        The step's config class (e.g. ``SplitConfig``).
    values : mapping or None
        The YAML section; None or empty gives the defaults.
    where : str
        File (or ``"<mapping>"``) named in errors.
    section : str
        Dotted prefix of the keys in errors (e.g. ``"split"``).
    converters : mapping of str to callable, optional
        Per-key conversions applied before the dataclass (e.g. layers from YAML).

    Returns
    -------
    instance of cls

    Raises
    ------
    ConfigError
        Unknown key (lists the valid ones), a value of the wrong type, or the
        dataclass's own validation, each prefixed with ``where: section.key``: an error
        of the dataclass (:func:`config_error`) whose key is relative to its section
        (``maximum``, not ``cluster.adaptive.maximum``) gets the section too.

    Examples
    --------
    >>> @dataclasses.dataclass(frozen=True, kw_only=True)
    ... class C:
    ...     n: int = 1
    ...     edges: tuple[float, ...] = (1.0, 2.0)
    >>> build_config(C, {"edges": [1, 5]}, where="run.yaml", section="c")
    C(n=1, edges=(1, 5))
    >>> build_config(C, {"m": 2}, where="run.yaml", section="c")
    Traceback (most recent call last):
    ...
    pipeline.errors.ConfigError: run.yaml: c.m: unknown key; valid: edges, n
    >>> @dataclasses.dataclass(frozen=True, kw_only=True)
    ... class Bounds:
    ...     maximum: int = 1
    ...     def __post_init__(self):
    ...         check_count("maximum", self.maximum, 1)  # relative to its section
    >>> build_config(Bounds, {"maximum": 0}, where="c.yaml", section="cluster.adaptive")
    Traceback (most recent call last):
    ...
    pipeline.errors.ConfigError: c.yaml: cluster.adaptive.maximum: 0; expected an integer >= 1.
    """
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: {section}: expected a mapping of options, got {values!r}.")
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(
                f"{where}: {section}.{key}: unknown key; valid: {', '.join(sorted(known))}"
            )
        if converters and key in converters:
            try:
                value = converters[key](value)
            except ConfigError as err:
                raise ConfigError(f"{where}: {section}.{key}: {err}") from err
            except (TypeError, ValueError) as err:
                raise ConfigError(f"{where}: {section}.{key}: {value!r}: {err}") from err
        else:
            value = _coerce(value, hints.get(key), f"{where}: {section}.{key}")
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except ConfigError as err:
        key = err.key
        relative = key is not None and key != section and not key.startswith(f"{section}.")
        text = f"{section}.{err}" if relative else str(err)
        raise ConfigError(f"{where}: {text}", key=f"{section}.{key}" if relative else key) from err
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {section}: {err}") from err


def _coerce(value: Any, hint: Any, label: str) -> Any:
    """Turn lists into tuples where the field is a tuple; check plain scalar types."""
    if hint is None:
        return value
    origin = typing.get_origin(hint)
    options = typing.get_args(hint) if origin in (typing.Union, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{label}: null is not allowed here; give a value or leave the key out.")
    for option in options:
        if typing.get_origin(option) is tuple and isinstance(value, list | tuple):
            return tuple(value)
    scalar = [o for o in options if o in (int, float, str, bool)]
    if scalar and not any(isinstance(value, o) for o in scalar):
        if float in scalar and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        names = " or ".join(o.__name__ for o in scalar)
        raise ConfigError(f"{label}: {value!r} is not {names}.")
    if bool not in scalar and isinstance(value, bool) and (int in scalar or float in scalar):
        raise ConfigError(f"{label}: {value!r} is a boolean; expected a number.")
    return value


# --------------------------------------------------------------------------- checks


def config_error(
    name: str, value: Any, expected: str, *, problem: str | None = None, fix: str | None = None
) -> ConfigError:
    """Build the one shape of config error: ``name: value[ problem]; expected[; fix].``.

    Parameters
    ----------
    name : str
        Dotted key (``"split.n_folds"``; relative to the section in nested configs).
    value : object
        The value found, shown with ``repr``.
    expected : str
        What is expected (``"expected an integer >= 2"``, ``"valid: 'a', 'b'"``).
    problem : str, optional
        What is wrong with the value, when ``expected`` alone does not say it
        (``"is not a SLURM time"``).
    fix : str, optional
        What to do, when it is more than giving what is expected.

    Returns
    -------
    ConfigError
        To raise; its ``key`` is ``name``.

    See Also
    --------
    check_count, check_range, check_positive, check_choice, check_strings

    Examples
    --------
    >>> raise config_error("cluster.walltime", "2h", "write e.g. 02:00:00",
    ...                    problem="is not a SLURM time")
    Traceback (most recent call last):
    ...
    pipeline.errors.ConfigError: cluster.walltime: '2h' is not a SLURM time; write e.g. 02:00:00.
    """
    text = f"{name}: {value!r}{f' {problem}' if problem else ''}; {expected}"
    if fix:
        text = f"{text}; {fix}"
    return ConfigError(text if text.endswith(".") else f"{text}.", key=name)


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_count(
    name: str,
    value: Any,
    minimum: int = 0,
    *,
    maximum: int | None = None,
    allow_none: bool = False,
    fix: str | None = None,
) -> None:
    """Check that ``value`` is an integer ``>= minimum`` (not a bool, not a float).

    Parameters
    ----------
    name : str
        Dotted key named in the error.
    value : object
        The value to check (numpy integers are integers).
    minimum : int
        Smallest valid value.
    maximum : int, optional
        Largest valid value; None: no bound.
    allow_none : bool
        None is valid too (an optional count).
    fix : str, optional
        What to do, appended to the message.

    Raises
    ------
    ConfigError
        ``name: value; expected an integer >= minimum.``

    Examples
    --------
    >>> check_count("split.n_folds", 5, 2)
    >>> check_count("split.n_folds", 2.5, 2)
    Traceback (most recent call last):
    ...
    pipeline.errors.ConfigError: split.n_folds: 2.5; expected an integer >= 2.
    >>> check_count("fields.lat_chunk", 0, 1, allow_none=True)
    Traceback (most recent call last):
    ...
    pipeline.errors.ConfigError: fields.lat_chunk: 0; expected an integer >= 1 (or None).
    """
    if allow_none and value is None:
        return
    if not _is_integer(value) or value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        expected = f"expected an integer {bounds}{' (or None)' if allow_none else ''}"
        raise config_error(name, value, expected, fix=fix)


def check_range(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    unit: str | None = None,
    fix: str | None = None,
) -> None:
    """Check that ``value`` is a finite real number within bounds.

    Parameters
    ----------
    name : str
        Dotted key named in the error.
    value : object
        The value to check (ints and numpy numbers are numbers, bools are not).
    low, high : float, optional
        Bounds; None: unbounded on that side.
    low_open, high_open : bool
        Exclude the bound itself (``(0, 1]`` is ``low=0, high=1, low_open=True``).
    unit : str, optional
        Unit shown after the range (``"km"``).
    fix : str, optional
        What to do, appended to the message.

    Raises
    ------
    ConfigError
        ``name: value; expected a number in (low, high] (unit).``

    See Also
    --------
    check_positive : a number > 0.

    Examples
    --------
    >>> check_range("train.subsample", 0.5, low=0, high=1, low_open=True)
    >>> check_range("train.subsample", 1.5, low=0, high=1, low_open=True)
    Traceback (most recent call last):
    ...
    pipeline.errors.ConfigError: train.subsample: 1.5; expected a number in (0, 1].
    >>> check_range("split.buffer_km", float("inf"), low=0, unit="km")
    Traceback (most recent call last):
    ...
    pipeline.errors.ConfigError: split.buffer_km: inf; expected a finite number >= 0 (km).
    """
    ok = _is_real(value) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if ok:
        return
    if low is not None and high is not None:
        what = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        what = f"a finite number {'>' if low_open else '>='} {low:g}"
    elif high is not None:
        what = f"a finite number {'<' if high_open else '<='} {high:g}"
    else:
        what = "a finite number"
    raise config_error(name, value, f"expected {what}{f' ({unit})' if unit else ''}", fix=fix)


def check_positive(name: str, value: Any, *, unit: str | None = None) -> None:
    """Check that ``value`` is a finite number > 0.

    Parameters
    ----------
    name : str
        Dotted key named in the error.
    value : object
        The value to check.
    unit : str, optional
        Unit shown in the error (``"m"``).

    Raises
    ------
    ConfigError
        ``name: value; expected a finite number > 0 (unit).``

    Examples
    --------
    >>> check_positive("targets.bin_m", 0, unit="m")
    Traceback (most recent call last):
    ...
    pipeline.errors.ConfigError: targets.bin_m: 0; expected a finite number > 0 (m).
    """
    check_range(name, value, low=0, low_open=True, unit=unit)


def check_choice(name: str, value: Any, valid: Iterable[Any], *, fix: str | None = None) -> None:
    """Check that ``value`` is one of ``valid``.

    Parameters
    ----------
    name : str
        Dotted key named in the error.
    value : object
        The value to check.
    valid : iterable
        The choices, listed (with ``repr``) in the error.
    fix : str, optional
        What to do, or what the choices mean, appended to the message.

    Raises
    ------
    ConfigError
        ``name: value; valid: 'a', 'b'.``

    Examples
    --------
    >>> check_choice("split.method", "grid", ("blocks", "basins"))
    Traceback (most recent call last):
    ...
    pipeline.errors.ConfigError: split.method: 'grid'; valid: 'blocks', 'basins'.
    """
    choices = tuple(valid)
    if not any(type(value) is type(c) and value == c for c in choices):  # True is not 1
        raise config_error(name, value, f"valid: {', '.join(map(repr, choices))}", fix=fix)


def check_strings(
    name: str,
    value: Any,
    *,
    valid: Iterable[str] | None = None,
    min_items: int = 0,
    distinct: bool = False,
    allow_none: bool = False,
    fix: str | None = None,
) -> tuple[str, ...] | None:
    """Check a list of names and return it as a tuple.

    Parameters
    ----------
    name : str
        Dotted key named in the error.
    value : object
        A list or tuple of strings (a single string is refused: ``["a"]``, not ``"a"``).
    valid : iterable of str, optional
        The names allowed; None allows any.
    min_items : int
        Fewest names.
    distinct : bool
        Refuse a name given twice.
    allow_none : bool
        None is valid too (and returned as None).
    fix : str, optional
        What to do, or what the names mean, appended to the message.

    Returns
    -------
    tuple of str or None

    Raises
    ------
    ConfigError
        Naming the key, the value and the unknown, missing or repeated names.

    Examples
    --------
    >>> check_strings("train.baselines", ["climatology"], valid=("climatology", "nearest"))
    ('climatology',)
    >>> check_strings("predictors.variables", "thetao")
    Traceback (most recent call last):
    ...
    pipeline.errors.ConfigError: predictors.variables: 'thetao' is one string; ...=['thetao'].
    >>> check_strings("train.baselines", ["mean"], valid=("climatology", "nearest"))
    Traceback (most recent call last):
    ...
    pipeline.errors.ConfigError: train.baselines: ['mean'] holds unknown ['mean']; valid: ...
    """
    if allow_none and value is None:
        return None
    leaf = name.rpartition(".")[2]
    if isinstance(value, str):
        raise config_error(
            name,
            value,
            f"expected a list of strings, e.g. {leaf}=[{value!r}]",
            problem="is one string",
            fix=fix,
        )
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise config_error(name, value, "expected a list of strings", fix=fix)
    names = tuple(value)
    if valid is not None:
        choices = tuple(valid)
        unknown = [v for v in names if v not in choices]
        if unknown:
            raise config_error(
                name,
                list(names),
                f"valid: {', '.join(map(repr, choices))}",
                problem=f"holds unknown {unknown!r}",
                fix=fix,
            )
    if len(names) < min_items:
        raise config_error(name, list(names), f"expected at least {min_items} name(s)", fix=fix)
    if distinct and len(set(names)) != len(names):
        twice = sorted({v for v in names if names.count(v) > 1})
        raise config_error(
            name, list(names), "expected distinct names", problem=f"repeats {twice!r}", fix=fix
        )
    return names
