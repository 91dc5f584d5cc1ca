"""Mutated model bundles, and what the loader must do with them.

The seed is a small autoencoder trained on real flows (IoT-23, :func:`tests.fuzz.common.real_flows`),
saved as a bundle. A mutation picks one of its files (the manifest most often) and either changes its
bytes (:func:`tests.fuzz.common.mutate_bytes`) or, for JSON, one value (a number made huge, negative,
fractional or text; a list or object emptied, nested or grown; a key removed); in most inputs the
manifest's checksum is then written anew, as a deliberate edit would, so the mutation reaches the
parsers behind the checksums. The oracle: :meth:`ModelBundle.load` returns a bundle or raises one of
nadkit's typed errors; a bundle that loads must score real flows with finite scores under a finite
threshold, else it is garbage accepted.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import tempfile
import time
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from nadkit.errors import NadkitError
from tests.fuzz.common import mutate_bytes, real_flows
from tests.fuzz.netflow import FuzzResult

#: small enough to load in milliseconds
CONFIG = {"epochs": 1, "hidden": [8], "bottleneck": 3, "batch_size": 64}
_VALUES: tuple[Any, ...] = (0, -1, 1e308, -1e308, 2**63, 0.5, "", "x" * 300, None, True, [], {}, [[[]]])


@cache
def seed_bundle() -> Path:
    """A small bundle trained on real flows, saved once per process (in a temporary folder)."""
    from nadkit.training.fit import fit

    folder = Path(tempfile.mkdtemp(prefix="nadkit-fuzz-bundle-"))
    result = fit(real_flows(300), model="ae", config=CONFIG)
    return result.bundle.save(folder / "model")


def _mutate_json(data: Any, rng: random.Random) -> Any:
    """``data`` with one value changed, somewhere inside."""
    if isinstance(data, dict) and data and rng.random() < 0.8:
        key = rng.choice(list(data))
        if rng.random() < 0.1:
            return {k: v for k, v in data.items() if k != key}
        return {**data, key: _mutate_json(data[key], rng)}
    if isinstance(data, list) and data and rng.random() < 0.8:
        index = rng.randrange(len(data))
        if rng.random() < 0.1:
            return data * rng.choice((2, 50))
        return [*data[:index], _mutate_json(data[index], rng), *data[index + 1 :]]
    if isinstance(data, int | float) and not isinstance(data, bool) and rng.random() < 0.5:
        return rng.choice((data * 1e6, -data, data + 0.5, data * 1e300 if data else 1e300))
    return rng.choice(_VALUES)


def mutate_bundle(folder: Path, rng: random.Random) -> None:
    """Change one file of the bundle copy ``folder`` (see the module docstring)."""
    names = sorted(p.name for p in folder.iterdir())
    name = "manifest.json" if rng.random() < 0.35 else rng.choice(names)
    file = folder / name
    content = file.read_bytes()
    try:
        parsed = json.loads(content) if name.endswith(".json") and rng.random() < 0.7 else None
    except ValueError:  # an earlier mutation broke it
        parsed = None
    if parsed is not None:
        changed = json.dumps(_mutate_json(parsed, rng)).encode()
    else:
        changed = mutate_bytes(content, rng)
    file.write_bytes(changed)
    if name != "manifest.json" and rng.random() < 0.8:
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
            files = manifest["files"]
        except (ValueError, TypeError, KeyError):
            return
        if isinstance(files, dict) and name in files:
            files[name] = hashlib.sha256(changed).hexdigest()
            (folder / "manifest.json").write_text(json.dumps(manifest))


def fuzz_bundles(count: int, seed: int = 0) -> FuzzResult:
    """Load ``count`` mutated copies of the seed bundle; count refusals, catch what escapes."""
    from nadkit.training.bundle import ModelBundle

    result = FuzzResult("bundle")
    rng = random.Random(f"bundle:{seed}")
    source = seed_bundle()
    flows = real_flows(300).head(50)
    with tempfile.TemporaryDirectory(prefix="nadkit-fuzz-") as work:
        for number in range(count):
            copy = Path(work) / f"model{number % 2}"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(source, copy)
            if number % 8:
                for _ in range(rng.choice((1, 1, 1, 2, 3))):
                    mutate_bundle(copy, rng)
            result.inputs += 1
            started = time.perf_counter()
            try:
                bundle = ModelBundle.load(copy, engine="torch", key="")
                scores = bundle.score(flows)
            except NadkitError:
                result.rejected += 1
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as error:  # the oracle: nothing else may escape
                result.exceptions.append(f"input {number}: {type(error).__name__}: {error}"[:600])
            else:
                result.flows += 1
                value = bundle.threshold.value if bundle.threshold is not None else float("nan")
                if not np.isfinite(value) or not np.isfinite(scores).all():
                    result.garbage.append(f"input {number}: threshold {value}, scores {scores[:3]}")
            result.slowest_s = max(result.slowest_s, time.perf_counter() - started)
    return result


__all__ = ["fuzz_bundles", "mutate_bundle", "seed_bundle"]
