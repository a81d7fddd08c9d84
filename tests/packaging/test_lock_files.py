"""The lock files: every dependency of pyproject.toml pinned to one version with hashes, the
two locks agreeing, and both installs (make, the image) taking them with hashes checked; and
`make run PORT=` reaching `jitprov dev --port`."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", re.M)


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def _pins(lock: str) -> dict[str, str]:
    text = (REPO / "requirements" / lock).read_text("utf-8")
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in PIN.findall(text)}


@pytest.fixture(scope="module")
def project() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("lock", "extras"), [("run.lock", ()), ("dev.lock", ("dev",))])
def test_every_dependency_is_pinned_with_hashes(project: dict[str, object], lock: str,
                                               extras: tuple[str, ...]) -> None:
    wanted = {_name(r) for r in project["dependencies"]}  # type: ignore[attr-defined]
    for extra in extras:  # an extra may take another of jitprov's own (``jitprov[otel]``)
        wanted |= {_name(r) for r in project["optional-dependencies"][extra]  # type: ignore[index]
                   if _name(r) != "jitprov"}
        wanted |= {_name(r) for own in project["optional-dependencies"][extra]  # type: ignore[index]
                   if _name(own) == "jitprov"
                   for name in re.findall(r"\[([^\]]*)\]", own)[0].split(",")
                   for r in project["optional-dependencies"][name.strip()]}  # type: ignore[index]
    pins = _pins(lock)
    assert wanted - set(pins) == set(), f"not in requirements/{lock}: run `make lock`"
    text = (REPO / "requirements" / lock).read_text("utf-8")
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.strip())
    assert all("--hash=sha256:" in block for block in blocks if "==" in block)


def test_the_two_locks_agree() -> None:
    run, dev = _pins("run.lock"), _pins("dev.lock")
    assert {name: dev.get(name) for name in run} == run


def test_make_and_the_image_install_from_the_lock_with_hashes() -> None:
    makefile = (REPO / "Makefile").read_text("utf-8")
    assert "--require-hashes -r requirements/run.lock" in makefile
    assert "--require-hashes -r requirements/dev.lock" in makefile
    dockerfile = (REPO / "Dockerfile").read_text("utf-8")
    assert "COPY requirements/run.lock" in dockerfile
    assert re.search(r"pip install --require-hashes[^\n]*\\\n\s+-r requirements/run\.lock",
                     dockerfile)


def test_make_run_takes_the_port() -> None:
    import shutil
    import subprocess

    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    planned = subprocess.run([make, "-n", "run", "PORT=8123"], cwd=REPO, capture_output=True,
                             text=True, timeout=60, check=True).stdout
    assert "jitprov dev --port 8123" in planned
    default = subprocess.run([make, "-n", "run"], cwd=REPO, capture_output=True, text=True,
                             timeout=60, check=True).stdout
    assert "jitprov dev --port 8000" in default
