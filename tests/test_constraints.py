"""``constraints.txt`` is the tested set of versions ``make install`` installs: it pins every package
``nadkit[all,dev]`` needs, within the ranges ``pyproject.toml`` declares, torch at the Makefile's
version, and the environment the tests run in is that set."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import REPO

# tools/lock.py as a module of its own name, without putting tools/ on every later import's path
_SPEC = importlib.util.spec_from_file_location("nadkit_tools_lock", REPO / "tools" / "lock.py")
assert _SPEC is not None and _SPEC.loader is not None
lock = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(lock)


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not NAME==VERSION"
            pins[canonicalize_name(name)] = Version(version)
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"])
    for requirements in project["optional-dependencies"].values():
        texts += [r for r in requirements if not r.startswith("nadkit[")]
    return [Requirement(t) for t in texts]


def test_every_declared_requirement_is_pinned_within_its_range() -> None:
    pins = _pins()
    for requirement in _declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"constraints.txt pins no version of {requirement.name} (run `make lock`)"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {requirement.name}=={pins[name]}, outside pyproject.toml's "
            f"{requirement.specifier} (run `make lock`)"
        )


def test_torch_is_pinned_at_the_makefiles_version() -> None:
    found = re.search(r"^TORCH_VERSION \?= (\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert found is not None
    assert _pins()["torch"] == Version(found[1])


def test_the_environment_is_the_pinned_set() -> None:
    """What the tests run with is what constraints.txt names, package for package: a dependency that
    came in since the last ``make lock`` (not pinned) or a version other than the pin fails here."""
    pins = _pins()
    needed = lock.closure("nadkit", {"all", "dev"})
    installed = {canonicalize_name(n): Version(lock.pin(v)) for n, v in needed.items()}
    unpinned = sorted(set(installed) - set(pins))
    assert not unpinned, f"installed and needed but not in constraints.txt: {unpinned} (run `make lock`)"
    differ = {n: (str(v), str(pins[n])) for n, v in installed.items() if v != pins[n]}
    assert not differ, (
        f"installed version differs from constraints.txt's pin: {differ} "
        "(pip install -c constraints.txt -e '.[all,dev]')"
    )


def test_the_lock_pins_without_local_labels(tmp_path: Path) -> None:
    assert lock.pin("2.13.0+cpu") == "2.13.0"
    assert lock.pin("1.26.4") == "1.26.4"
    out = tmp_path / "c.txt"
    assert lock.main(["--out", str(out)]) == 0
    written = out.read_text()
    assert written.startswith("# ")
    assert "nadkit==" not in written and "+" not in written
    assert metadata.version("polars").split("+")[0] in written
