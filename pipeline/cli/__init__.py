"""The ``oceanfields`` command line: the face of the flow, and the only place that prints.

:mod:`~pipeline.cli.main` holds the ``oceanfields`` group and the commands of the run
(``run``, one command per step, ``ingest``, ``catalog``); ``demo`` (:mod:`~pipeline.cli.demo`),
``images`` (:mod:`~pipeline.cli.images`), ``cluster`` (:mod:`~pipeline.cli.cluster`) and
``bench`` (:mod:`~pipeline.cli.bench`) are commands of their own modules.
``python -m pipeline.cli`` and ``python -m pipeline`` run the same command.
"""

from __future__ import annotations

from pipeline.cli.main import main

__all__ = ["main"]
