"""The `nadkit` command line. Thin: parses options, calls the library, prints with rich.

`app` is the Typer application and `main` its entry point (the `nadkit` console script). Each command
module registers its commands on `app` when it is imported; they are imported here, and the order of
the imports is the order of the commands in `nadkit --help`:

- `data`: formats, inspect, featurize, split
- `training`: train
- `detection`: detect, stream, evaluate
- `registry`: the `models` group (available, list, register, activate)
- `service`: serve
- `feedback`: retrain
- `simulation`: simulate, mix-captures, label-flows
- `demo`: demo
- `pictures`: the `plot` group (groups, alert)

`allocator` is imported first: it sets how long Polars keeps freed memory (see there).
"""

# the allocator's setting is read when Polars loads: before anything imports it
from nadkit.cli import allocator  # noqa: F401 (imported for its effect)
from nadkit.cli.application import app, main

# isort: off
from nadkit.cli import (  # noqa: F401 (imported for the commands they register)
    data,
    training,
    detection,
    registry,
    service,
    feedback,
    simulation,
    demo,
    pictures,
)
# isort: on

__all__ = ["app", "main"]
