"""The command line keeps Polars' freed pages for ten seconds (:mod:`nadkit.cli.allocator`); the library
leaves Polars' own setting, and a user's own ``_RJEM_MALLOC_CONF`` is kept as it is."""

from __future__ import annotations

import os
import subprocess
import sys

from nadkit.cli.allocator import DECAY, POLARS_DEFAULTS, VARIABLE

#: what Polars appends the user's setting to (its own short decay)
SHOW = "import os, polars; print(os.environ['" + VARIABLE + "'])"


def _seen(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != VARIABLE}
    done = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_the_command_line_keeps_freed_pages_for_ten_seconds() -> None:
    seen = _seen("import nadkit.cli; " + SHOW)
    # Polars puts its own default first: the last value of each option is the one jemalloc takes
    assert seen.endswith(DECAY) and DECAY == "dirty_decay_ms:10000,muzzy_decay_ms:10000"
    assert "dirty_decay_ms:500" in seen


def test_the_library_leaves_polars_own_setting() -> None:
    seen = _seen("import nadkit.api; " + SHOW)
    assert DECAY not in seen


def test_a_users_own_setting_is_kept() -> None:
    seen = _seen("import nadkit.cli; " + SHOW, **{VARIABLE: "dirty_decay_ms:2000"})
    assert seen.endswith("dirty_decay_ms:2000")
    assert DECAY not in seen


def test_polars_own_default_inherited_from_a_parent_process_is_not_the_users() -> None:
    # a script that imported Polars and starts `nadkit` passes Polars' default on
    for inherited in POLARS_DEFAULTS:
        seen = _seen("import nadkit.cli; " + SHOW, **{VARIABLE: inherited})
        assert seen.endswith(DECAY)
    assert _seen(
        "import subprocess, sys, polars; subprocess.run([sys.executable, '-c', "
        + repr("import nadkit.cli; " + SHOW)
        + "], check=True)"
    ).endswith(DECAY)


def test_too_late_once_polars_is_loaded() -> None:
    seen = _seen(
        "import polars, nadkit.cli, os; from nadkit.cli.allocator import keep_freed_pages; "
        "print(keep_freed_pages(), os.environ['" + VARIABLE + "'])"
    )
    assert seen.startswith("False ")
    assert DECAY not in seen
