"""The mutation fuzzers in the default run: a few hundred inputs per family with a fixed seed; nothing
may escape as an untyped exception, hang, or be accepted as garbage (``benchmarks/fuzz.py`` runs
them long)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.netflow import FuzzResult
from tests.fuzz.readers import FORMATS

#: inputs per family in the default run
INPUTS = 200
#: the slowest single input allowed (the long run's hang bound is 30 s)
SLOWEST_S = 30.0


def _check(result: FuzzResult) -> None:
    assert result.inputs == INPUTS
    assert result.exceptions == []
    assert result.garbage == []
    assert result.slowest_s < SLOWEST_S
    assert result.rejected > 0  # the mutations reach the checks


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_readers_refuse_mutated_files_cleanly(fmt: str, shared_data: Path) -> None:
    from tests.fuzz.readers import fuzz_reader

    _check(fuzz_reader(fmt, INPUTS, seed=0))


def test_the_bundle_loader_refuses_mutated_bundles_cleanly(shared_data: Path) -> None:
    from tests.fuzz.bundles import fuzz_bundles

    result = fuzz_bundles(INPUTS, seed=0)
    _check(result)
    assert result.flows >= INPUTS // 8  # the unmutated copies load


@pytest.mark.slow
def test_the_service_answers_mutated_bodies_with_4xx(shared_data: Path) -> None:
    pytest.importorskip("fastapi")
    from tests.fuzz.service import fuzz_service

    result = fuzz_service(INPUTS, seed=0)
    _check(result)
    assert result.flows >= INPUTS // 8
