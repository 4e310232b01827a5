"""What every step of a run is given: :class:`StepContext`.

:func:`pipeline.run.steps.run_steps` makes one context per run and hands it to each
step (``step(ctx) -> state``): the validated run, the one output store every output
goes through, the Dask client, and the two callbacks of the command line (a line per
event, a progress bar of the fields write).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.run.config import RunConfig
from pipeline.store import OutputStore

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["StepContext"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class StepContext:
    """The run, its output store, its cluster and its callbacks, for one step.

    Attributes
    ----------
    config : RunConfig
        The validated run (:func:`pipeline.run.config.load_run_config`).
    store : OutputStore
        The run's output folder; steps read their inputs and write every output there.
    client : distributed.Client or None
        The cluster's client (training and the fields run on its workers).
    echo : callable
        Receives one line per event (the CLI prints them); default the module logger.
    progress : callable or None
        ``progress(done, total)`` while the fields are written.

    Examples
    --------
    >>> ctx = StepContext(config=RunConfig(), store=OutputStore("out/run"))
    >>> ctx.store.path("targets.parquet")
    'out/run/targets.parquet'
    >>> ctx.echo("[targets] running")  # logged at INFO when no echo is given
    """

    config: RunConfig
    store: OutputStore
    client: Client | None = None
    echo: Callable[[str], None] = logger.info
    progress: Callable[[int, int], None] | None = None
