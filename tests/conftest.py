"""Shared fixtures: paths to the real sample files and hypothesis profiles."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

#: Fixtures ``s3`` and ``s3_server``: a real S3 endpoint (moto server on 127.0.0.1);
#: ``scheduler_file``: a scheduler and 2 worker processes on 127.0.0.1.
pytest_plugins = ("tests.s3server", "tests.dask_processes")

ROOT = Path(__file__).resolve().parents[1]
#: Real sample files (../shared/data relative to the project's root; see its README).
SHARED_DATA = Path(os.environ.get("OCEANFIELDS_SHARED_DATA", ROOT.parent / "shared" / "data"))

# ci: derandomized, so a CI run is repeatable; dev explores more and differently each run.
settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the real sample files; skips when it is not beside the checkout."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA}")
    return SHARED_DATA


#: The longest test files (whole chains, demo runs, image training), longest first: run
#: first, so that ``-n 2 --dist loadfile`` (one file per process at a time) fills the two
#: processes with the short files at the end instead of waiting on a long one.
LONGEST_FIRST = (
    "test_run_skill.py",
    "test_run.py",
    "test_faults.py",
    "test_demo_cli.py",
    "test_recipes.py",
    "test_run_scheduler.py",
    "test_images.py",
    "test_run_cli.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the longest files first (a stable sort: each file's tests keep their order)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
