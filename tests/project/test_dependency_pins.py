"""The lock (requirements/dev.txt) and the package's ranges agree: every dependency that
pyproject.toml names, in any extra, is pinned in the lock to a release its range admits, so
an install constrained by the lock fixes every version. The ranges stay ranges (the lock pins;
the package metadata does not), torch is the CPU wheel, and the README's two commands and CI
install through the lock."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _lock(name: str = "dev.txt") -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "requirements" / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(requirement.name)] = Version(spec.version)
    return pins


def _declared() -> list[Requirement]:
    requirements = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in PROJECT["optional-dependencies"].values():
        requirements += [Requirement(r) for r in extra]
    return [r for r in requirements if canonicalize_name(r.name) != "dcign"]


def test_every_declared_dependency_is_pinned_in_the_lock_within_its_range():
    pins = _lock()
    unpinned = sorted({r.name for r in _declared()} - set(pins))
    assert not unpinned, f"not in requirements/dev.txt (run `nox -s lock`): {unpinned}"
    outside = [f"{r} but {pins[canonicalize_name(r.name)]}" for r in _declared()
               if not r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True)]
    assert not outside, f"the lock pins outside pyproject.toml's range: {outside}"


def test_the_package_metadata_keeps_ranges_and_tested_floors():
    for r in _declared():
        assert all(s.operator not in ("==", "===") for s in r.specifier), f"{r} is pinned"
    torch = next(r for r in _declared() if r.name == "torch")
    # torch.load(weights_only=True) could be bypassed before 2.6 (CVE-2025-32434)
    assert not torch.specifier.contains("2.5.1") and torch.specifier.contains("2.6.0"), torch


def test_the_lock_holds_the_cpu_torch_that_the_commands_name():
    assert str(_lock()["torch"]).startswith("2.13.0+cpu")
    pin = re.search(r"^torch==(\S+)$", (ROOT / "requirements" / "dev.in").read_text(), re.M)
    assert pin and pin.group(1) == "2.13.0"
    assert 'TORCH = "torch==2.13.0"' in (ROOT / "noxfile.py").read_text()
    assert not [name for name in _lock() if name.startswith("nvidia-")], "a CUDA torch"


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Quick start")
    section = text[start:text.index("\n## ", start + 1)]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_both_readme_commands_install_through_the_lock_and_ci_runs_the_test_command():
    commands = _readme_commands()
    assert len(commands) == 2, commands  # the main job, the tests
    for command in commands:
        assert command.startswith("python3 -m venv .venv && ")
        assert "pip install" in command and " -c requirements/dev.txt " in command, command
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()
