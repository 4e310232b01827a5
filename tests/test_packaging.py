"""What an install gives: the command under ``python -m``, and the catalogs inside the wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import pipeline
from pipeline.catalog import CATALOG_DIR
from tests.conftest import ROOT

GROUPS = ("images", "cluster", "bench", "run", "demo", "export", "serve", "catalog")
#: The catalogs users see in the checkout (top-level catalogs/).
CATALOGS = sorted(p.name for p in (ROOT / "catalogs").glob("*.yaml"))


def _python(*args: str, cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )


@pytest.mark.parametrize("module", ["pipeline.cli", "pipeline"])
def test_python_m_lists_every_command_group(module, tmp_path):
    result = _python("-m", module, "--help", cwd=tmp_path, pythonpath=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: oceanfields ")
    commands = result.stdout.partition("Commands:")[2].split()
    for group in GROUPS:
        assert group in commands, f"{group!r} missing from 'python -m {module} --help'"


def test_the_shipped_catalogs_are_package_data_with_one_copy():
    assert CATALOG_DIR == Path(pipeline.__file__).parent / "catalogs"
    assert {
        "demo.yaml",
        "ecopart.yaml",
        "ecotaxa.yaml",
        "copernicus.yaml",
        "climatologies.yaml",
    } <= set(CATALOGS)
    # The top-level catalogs/ users see is a link to the package's folder, not a copy.
    assert (ROOT / "catalogs").resolve() == (ROOT / "pipeline" / "catalogs").resolve()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built offline from a copy of the source (the checkout stays clean)."""
    src = tmp_path_factory.mktemp("src")
    shutil.copytree(
        ROOT / "pipeline", src / "pipeline", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    build = ["-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", str(out)]
    result = _python(*build, cwd=src)
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = out.glob("oceanfields-*.whl")
    return path


def test_the_wheel_holds_every_shipped_catalog(wheel):
    assert "demo.yaml" in CATALOGS
    names = zipfile.ZipFile(wheel).namelist()
    assert sorted(n for n in names if n.startswith("pipeline/catalogs/")) == [
        f"pipeline/catalogs/{name}" for name in CATALOGS
    ]


def test_an_installed_wheel_opens_the_demo_catalog_from_anywhere(wheel, tmp_path):
    site = tmp_path / "site"
    install = ["-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site)]
    result = _python(*install, str(wheel), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    code = (
        "import pipeline; from pipeline.catalog import CATALOG_DIR, open_catalog; "
        "print(pipeline.__file__); print(CATALOG_DIR); "
        "print(sorted(open_catalog('demo', root='x')))"
    )
    result = _python("-c", code, cwd=tmp_path, pythonpath=site)
    assert result.returncode == 0, result.stderr[-3000:]
    module, folder, entries = result.stdout.splitlines()
    assert Path(module).is_relative_to(site)
    assert Path(folder) == site / "pipeline" / "catalogs"
    assert "ecopart_detailed" in entries
