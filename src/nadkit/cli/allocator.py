"""How long the command line's Polars keeps freed memory before handing it back to the system.

Polars' allocator (jemalloc) returns freed pages to the system within half a second by default
(``dirty_decay_ms:500,muzzy_decay_ms:1000``, set by ``import polars`` into ``_RJEM_MALLOC_CONF``).
A command such as ``nadkit detect`` frees and allocates about the same memory for every chunk of
flows, so with that default each chunk takes its pages back from the system, which clears them
first: on the scoring benchmark's 1.2M flows about 690,000 page faults and 2.6-3.3 s of system
time in 12 s of CPU. Kept for ten seconds (several chunks' time), the pages are reused by the next
chunks: about 500,000 faults and 1.8-2.3 s, detection faster in 5 of 6 alternating runs (median
6.31 s against 6.67 s, 2 cores, measured with a minute), at a peak resident size about 0.4 GB
higher. A minute did no better and held more the longer a run went (4.8M flows: peak 3.2 GB
against 2.6 GB with ten seconds and 2.5 GB with five). Long-running commands (``serve``,
``stream``) still give back what stays unused for ten seconds.

This module is imported by :mod:`nadkit.cli` before anything imports Polars (the setting is read
once, when Polars loads). A ``_RJEM_MALLOC_CONF`` of the user's own is left as it is; one that holds
only Polars' default was inherited from a parent process that imported Polars (a script, a test, a
benchmark starting ``nadkit``), and gets the command line's setting after it. The library
(``import nadkit``) changes nothing.
"""

from __future__ import annotations

import os
import sys

#: jemalloc's options for the command line: freed pages kept for 10 s before they are returned
DECAY = "dirty_decay_ms:10000,muzzy_decay_ms:10000"
#: the variable Polars reads (and extends with its own defaults, which ours then override)
VARIABLE = "_RJEM_MALLOC_CONF"
#: what ``import polars`` writes into :data:`VARIABLE` when it finds it unset (``POLARS_THP=1`` adds
#: the huge-page options): a value that is one of these is Polars', not the user's
POLARS_DEFAULTS = (
    "dirty_decay_ms:500,muzzy_decay_ms:1000",
    "dirty_decay_ms:500,muzzy_decay_ms:1000,thp:always,metadata_thp:always",
)


def keep_freed_pages() -> bool:
    """Set :data:`DECAY` for Polars' allocator unless the user set ``_RJEM_MALLOC_CONF`` or Polars is
    already loaded (too late then); True when it was set."""
    if "polars" in sys.modules:
        return False
    inherited = os.environ.get(VARIABLE)
    if inherited is None:
        os.environ[VARIABLE] = DECAY
        return True
    if inherited in POLARS_DEFAULTS:
        # jemalloc takes the last value of an option: ours, after Polars' own
        os.environ[VARIABLE] = f"{inherited},{DECAY}"
        return True
    return False


keep_freed_pages()

__all__ = ["DECAY", "POLARS_DEFAULTS", "VARIABLE", "keep_freed_pages"]
