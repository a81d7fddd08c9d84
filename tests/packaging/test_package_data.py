"""Every non-Python file of the package is shipped in the wheel (the Docker image and any
``pip install`` get what the source tree has): each matches a package-data pattern."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "jitprov"


def test_every_template_static_file_and_data_file_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["jitprov"]
    data_files = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*")
                  if p.is_file() and p.suffix not in (".py", ".pyc")
                  and "__pycache__" not in p.parts]

    unshipped = [f for f in data_files
                 if not any(fnmatch.fnmatchcase(f, pattern) and
                            f.count("/") == pattern.count("/") for pattern in patterns)]

    assert data_files, "the package has templates and migrations"
    assert unshipped == []
