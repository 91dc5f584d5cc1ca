"""Property-based tests of the live service against its own OpenAPI document (schemathesis, a
bounded number of examples per operation, 127.0.0.1 only): no server errors, answers as
documented, bad input refused with 4xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.service.helpers import AUTH, TOKEN, Kit, live_server, registry_with

MAX_EXAMPLES = 30
#: Requests can fit the document and still be refused (422): a flow table without the columns the
#: active model needs, a confirmed verdict without its attack class. OpenAPI cannot say either, so
#: the check that every document-valid request is accepted is left out; every other check runs.
EXCLUDED = [positive_data_acceptance]


@pytest.fixture(scope="module")
def api_url(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from nadkit.service.settings import Settings

    folder = tmp_path_factory.mktemp("schemathesis")
    registry_with(kit, folder / "models")
    service = Settings(
        db=folder / "alerts.db", registry=folder / "models", token=TOKEN, max_body_bytes=2 * 1024 * 1024
    )
    with live_server(service) as url:
        # some alerts to look at, filter and label
        answer = httpx.post(
            f"{url}/v1/score",
            content=Path(kit.test_csv).read_bytes(),
            headers={**AUTH, "Content-Type": "text/csv"},
            timeout=120,
        )
        assert answer.status_code == 200, answer.text
        yield url


@pytest.fixture(scope="module")
def api_schema(api_url: str):  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_url(f"{api_url}/openapi.json", headers=AUTH)


def _check(operation, mode: GenerationMode) -> list[str]:  # type: ignore[no-untyped-def]
    """Run ``MAX_EXAMPLES`` generated requests of one operation; the failures found."""
    failures: list[str] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case) -> None:  # type: ignore[no-untyped-def]
        case.call_and_validate(headers=AUTH, timeout=60, excluded_checks=EXCLUDED)

    try:
        run()
    except Unsatisfiable:
        # nothing of this operation can be made invalid (no parameters, no body)
        assert mode == GenerationMode.NEGATIVE, operation.label
    except (AssertionError, BaseExceptionGroup) as error:  # how schemathesis reports failed checks
        failures.append(f"{operation.label} ({mode}): {str(error).strip()[:1500]}")
    return failures


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_keeps_its_contract(api_schema, mode: GenerationMode) -> None:  # type: ignore[no-untyped-def]
    failures: list[str] = []
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1
        failures += _check(operation, mode)
    assert operations >= 9
    assert not failures, "\n\n".join(failures[:10])
