"""The one config loader: YAML files and mappings into the frozen config dataclasses.

Every step owns a frozen ``*Config`` dataclass whose defaults are the only defaults
(style.md). This module turns a YAML section into such a dataclass: unknown keys are
errors that list the valid ones, YAML lists become the tuples the dataclasses hold, and
every error names the file and the dotted key (``run.yaml: split.blok_deg: unknown key;
valid: block_deg, ...``).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pipeline.errors import ConfigError

__all__ = ["build_config", "read_yaml"]

T = TypeVar("T")


def read_yaml(source: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """Read a YAML file (or take a mapping) and return it with a label for errors.

    Parameters
    ----------
    source : path or mapping
        A YAML file holding a mapping, or the mapping itself.

    Returns
    -------
    (dict, str)
        The document and where it came from (the path, or ``"<mapping>"``).

    Raises
    ------
    ConfigError
        When the file is missing, is not YAML, or does not hold a mapping.

    Examples
    --------
    >>> read_yaml({"split": {"n_folds": 3}})
    ({'split': {'n_folds': 3}}, '<mapping>')
    """
    if isinstance(source, Mapping):
        return dict(source), "<mapping>"
    where = str(source)
    try:
        doc = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(f"{where}: file not found.") from err
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
        dataclass's own validation, each prefixed with ``where: section.key``.

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
        text = str(err)
        raise ConfigError(text if text.startswith(where) else f"{where}: {text}") from err
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
