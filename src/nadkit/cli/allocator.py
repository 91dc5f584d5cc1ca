"""How long the command line's Polars keeps freed memory before handing it back to the system.

Polars' allocator (jemalloc) returns freed pages to the system within half a second by default
(``dirty_decay_ms:500,muzzy_decay_ms:1000``, set by ``import polars`` into ``_RJEM_MALLOC_CONF``).
A command such as ``nadkit detect`` frees and allocates about the same memory for every chunk of
flows, so with that default each chunk takes its pages back from the system, which clears them
first: on 1.2M flows about 700,000 page faults, 3 s of the 12 s of CPU. Kept for a minute, the
pages are reused by the next chunks: detection of the same flows ran about 15% faster (the
scoring benchmark's day, 2 cores), at a peak resident size about 0.4 GB higher. Long-running
commands (``serve``, ``stream``) still give back what stays unused for a minute.

This module is imported by :mod:`nadkit.cli` before anything imports Polars (the setting is read
once, when Polars loads). A ``_RJEM_MALLOC_CONF`` of the user's own is left as it is; the library
(``import nadkit``) changes nothing.
"""

from __future__ import annotations

import os
import sys

#: jemalloc's options for the command line: freed pages kept for 60 s before they are returned
DECAY = "dirty_decay_ms:60000,muzzy_decay_ms:60000"
#: the variable Polars reads (and extends with its own defaults, which ours then override)
VARIABLE = "_RJEM_MALLOC_CONF"


def keep_freed_pages() -> bool:
    """Set :data:`DECAY` for Polars' allocator unless the user set ``_RJEM_MALLOC_CONF`` or Polars is
    already loaded (too late then); True when it was set."""
    if VARIABLE in os.environ or "polars" in sys.modules:
        return False
    os.environ[VARIABLE] = DECAY
    return True


keep_freed_pages()

__all__ = ["DECAY", "VARIABLE", "keep_freed_pages"]
