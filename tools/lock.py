"""Write ``constraints.txt``: the installed version of every package ``nadkit[all,dev]`` needs, directly
or through another package, and nothing else the environment happens to hold (a profiler installed by
hand). ``make lock`` runs it after upgrading the environment; ``make install`` installs these versions.

    python tools/lock.py [--out constraints.txt] [--extras all,dev]
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HEADER = (
    "# The versions `make install` installs (pip's -c): the set the tests passed with.\n"
    "# Written by `make lock` (tools/lock.py); pyproject.toml keeps the ranges that a pip install\n"
    "# of nadkit accepts.\n"
)


def _applies(requirement: Requirement, extras: set[str]) -> bool:
    """Whether ``requirement`` holds here with ``extras`` asked for (no extra: its marker as it is)."""
    if requirement.marker is None:
        return True
    environment = {k: str(v) for k, v in default_environment().items()}
    return any(requirement.marker.evaluate({**environment, "extra": e}) for e in (extras or {""}))


def closure(root: str, extras: set[str]) -> dict[str, str]:
    """Installed name -> version of ``root`` (with ``extras``) and of everything it needs, ``root``
    itself left out. A requirement that is not installed is an error: the environment is incomplete."""
    found: dict[str, str] = {}
    todo: list[tuple[str, set[str]]] = [(root, extras)]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, wanted = todo.pop()
        key = (canonicalize_name(name), frozenset(wanted))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            message = f"lock: {name} is required but not installed (run `make install` first)"
            raise SystemExit(message) from None
        if canonicalize_name(name) != canonicalize_name(root):
            found[dist.metadata["Name"]] = dist.version
        for text in dist.requires or []:
            requirement = Requirement(text)
            if _applies(requirement, wanted):
                todo.append((requirement.name, set(requirement.extras)))
    return found


def pin(version: str) -> str:
    """``version`` without its local label: ``2.13.0+cpu`` pins ``2.13.0``, which the CPU build meets."""
    return re.sub(r"\+.*$", "", version)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("constraints.txt"))
    parser.add_argument("--extras", default="all,dev")
    args = parser.parse_args(argv)
    found = closure("nadkit", {e for e in args.extras.split(",") if e})
    lines = [f"{name}=={pin(version)}" for name, version in sorted(found.items(), key=lambda i: i[0].lower())]
    partial = args.out.with_name(args.out.name + ".tmp")
    partial.write_text(HEADER + "\n".join(lines) + "\n")
    partial.replace(args.out)
    print(f"{args.out}: {len(lines)} packages", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
