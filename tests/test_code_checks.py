"""The checks that keep the code as the house rules want it, run with the suite (so by
README's test command and .ci/run): the type checker over metarr_sync/ (its settings in
pyproject.toml's [tool.mypy]) and ruff over the repository ([tool.ruff])."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_check(*command: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    if f"No module named {command[0]}" in result.stderr:
        pytest.fail(f"{command[0]} is not installed: pip install -e '.[test]'")
    return result


def test_mypy_reports_nothing_on_the_whole_package() -> None:
    result = run_check("mypy")
    assert result.returncode == 0, f"`python -m mypy` reported:\n{result.stdout}{result.stderr}"
    # pyproject.toml's `files` is the package: every module of it was checked.
    modules = len(list((ROOT / "metarr_sync").rglob("*.py")))
    assert result.stdout.strip() == f"Success: no issues found in {modules} source files"


def test_ruff_reports_nothing() -> None:
    result = run_check("ruff", "check", ".")
    assert result.returncode == 0, f"`ruff check .` reported:\n{result.stdout}{result.stderr}"


def test_mypy_with_the_projects_settings_fails_on_a_type_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def half(n: int) -> int:\n    return n / 2\n\n\ndef untyped(x):\n"
                   "    return x\n\n\nSILENCED: int = 'one'  # type: ignore\n",
                   encoding="utf-8")
    result = run_check("mypy", "--config-file", str(ROOT / "pyproject.toml"), str(bad))
    assert result.returncode == 1
    assert "bad.py:2: error: Incompatible return value type" in result.stdout
    # disallow_untyped_defs: a function without annotations is an error too.
    assert "bad.py:5: error: Function is missing a type annotation" in result.stdout
    # An ignore must name the error it silences.
    assert "bad.py:9: error: \"type: ignore\" comment without error code" in result.stdout


def test_ruff_with_the_projects_settings_fails_on_an_unused_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n", encoding="utf-8")
    result = run_check("ruff", "check", "--config", str(ROOT / "pyproject.toml"), str(bad))
    assert result.returncode == 1
    assert "F401" in result.stdout
