"""Mutated request bodies for the service's ``POST /v1/score``, and what it must answer.

Seeds are real flows (IoT-23, :func:`tests.fuzz.common.real_flows`) as the three body types a client
sends: a JSON array of flow objects, CSV and an Arrow IPC stream; the model is the fuzzers' small
bundle trained on the same capture (:func:`tests.fuzz.bundles.seed_bundle`). A mutation changes the
body's bytes (:func:`tests.fuzz.common.mutate_bytes`), or for JSON one value (see
:func:`tests.fuzz.bundles._mutate_json`) or its nesting; now and then the Content-Type is swapped.
The service runs in process (FastAPI's test client) with its alert store. The oracle: every answer is
2xx or 4xx (a 5xx is an exception that escaped); an answer 200 whose results hold an invalid address
or port is garbage accepted.
"""

from __future__ import annotations

import io
import json
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from tests.fuzz.bundles import _mutate_json, seed_bundle
from tests.fuzz.common import mutate_bytes, real_flows
from tests.fuzz.netflow import FuzzResult

TYPES = ("application/json", "text/csv", "application/vnd.apache.arrow.stream")
TOKEN = "fuzz-token-0123456789abcdef"


@cache
def seed_bodies() -> dict[str, bytes]:
    """A body of real flows per Content-Type."""
    flows = real_flows(300).head(40)
    text = io.BytesIO()
    flows.write_csv(text)
    arrow = io.BytesIO()
    flows.write_ipc_stream(arrow)
    records = json.loads(flows.write_json())
    return {TYPES[0]: json.dumps(records).encode(), TYPES[1]: text.getvalue(), TYPES[2]: arrow.getvalue()}


def mutated_bodies(count: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """``count`` (Content-Type, body) pairs: mostly mutated, one in eight as it is."""
    rng = random.Random(f"service:{seed}")
    bodies = seed_bodies()
    for number in range(count):
        kind = rng.choice(TYPES)
        body = bodies[kind]
        if number % 8:
            if kind == TYPES[0] and rng.random() < 0.5:
                data: Any = json.loads(body)
                if rng.random() < 0.05:
                    depth = rng.choice((50, 5000, 100_000))
                    body = b"[" * depth + b"]" * depth
                else:
                    body = json.dumps(_mutate_json(data, rng)).encode()
            else:
                body = mutate_bytes(body, rng, list(bodies.values()))
            if rng.random() < 0.05:
                kind = rng.choice((*TYPES, "text/plain", ""))
        yield kind, body


@contextmanager
def service_client(folder: Path) -> Iterator[Any]:
    """The service with the fuzzers' model active and an empty store in ``folder``."""
    from fastapi.testclient import TestClient

    from nadkit.lifecycle.registry import ModelRegistry
    from nadkit.service import create_app
    from nadkit.service.settings import Settings

    registry = ModelRegistry(folder / "models")
    registry.activate(registry.register(seed_bundle()).version)
    settings = Settings(db=folder / "alerts.db", registry=folder / "models", token=TOKEN)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _answer_problems(answer: Any) -> list[str]:
    import ipaddress

    problems = []
    for index, row in enumerate(answer.get("results") or [] if isinstance(answer, dict) else []):
        for column in ("src", "dst"):
            value = row.get(column)
            if value is not None:
                try:
                    ipaddress.ip_address(value)
                except ValueError:
                    problems.append(f"result {index}: {column} {value!r}")
        for column in ("spt", "dpt"):
            value = row.get(column)
            if value is not None and not 0 <= value <= 65535:
                problems.append(f"result {index}: {column} {value}")
    return problems[:5]


def fuzz_service(count: int, seed: int = 0) -> FuzzResult:
    """Send ``count`` mutated bodies to ``/v1/score``; count refusals, catch what escapes."""
    result = FuzzResult("service")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with tempfile.TemporaryDirectory(prefix="nadkit-fuzz-") as folder, service_client(Path(folder)) as client:
        for number, (kind, body) in enumerate(mutated_bodies(count, seed)):
            result.inputs += 1
            started = time.perf_counter()
            answer = client.post("/v1/score", content=body, headers={**headers, "Content-Type": kind})
            result.slowest_s = max(result.slowest_s, time.perf_counter() - started)
            if answer.status_code >= 500:
                result.exceptions.append(f"input {number} ({kind}) {body[:160]!r}: {answer.status_code}")
            elif answer.status_code >= 400:
                result.rejected += 1
            else:
                result.flows += 1
                problems = _answer_problems(answer.json())
                result.garbage.extend(f"input {number} ({kind}): {p}" for p in problems)
    return result


__all__ = ["fuzz_service", "mutated_bodies", "seed_bodies", "service_client"]
