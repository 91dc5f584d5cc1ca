"""Live detection: flows from a NetFlow/IPFIX collector, a capture, a followed file or standard input,
scored in micro-batches with the state of the batch pipeline carried across them, and written to
JSON lines, the alert store, syslog or a webhook (`nadkit stream`).

* :mod:`nadkit.stream.netflow`: NetFlow v5/v9 and IPFIX decoding;
* :mod:`nadkit.stream.sources`: the sources and their producer threads;
* :mod:`nadkit.stream.sinks`: where records go;
* :mod:`nadkit.stream.runner`: the micro-batch loop, bounded memory, checkpoints;
* :mod:`nadkit.stream.continual`: drift windows and the adaptive threshold;
* :mod:`nadkit.stream.retraining`: scheduled retraining with a safe promotion (``--retrain-every``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from nadkit.stream.netflow import FlowDecoder
from nadkit.stream.runner import (
    Checkpoint,
    StreamConfig,
    StreamRunner,
    StreamStats,
    model_version,
    stop_on_signals,
)
from nadkit.stream.sinks import Sink, open_sink
from nadkit.stream.sources import FrameSource, StreamSource, open_source
from nadkit.training.bundle import Engine, ModelBundle


def open_stream(
    bundle: ModelBundle | str | Path,
    source: str | StreamSource,
    sinks: Sequence[str | Sink] = ("-",),
    config: StreamConfig | None = None,
    *,
    format: str | None = None,
    mapping: str | None = None,
    engine: Engine = "auto",
    on_status: Callable[[StreamStats], None] | None = None,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
    sink_format: str = "nadkit",
) -> StreamRunner:
    """A :class:`StreamRunner` for a bundle (or its directory), a source text (or source) and sink
    texts (or sinks); call ``run()`` on it. Sources and sinks opened here are closed by the runner.
    ``sink_format``: what the sinks opened here write, nadkit's records or ECS documents (``ecs``)."""
    if not isinstance(bundle, ModelBundle):
        bundle = ModelBundle.load(bundle, engine=engine)
    opened_source = (
        source
        if isinstance(source, StreamSource)
        else open_source(source, format=format, mapping=mapping, stdin=stdin)
    )
    version = model_version(bundle)
    opened: list[Sink] = []
    try:
        for sink in sinks:
            opened.append(
                sink
                if isinstance(sink, Sink)
                else open_sink(
                    sink, model_version=version, source=opened_source.name, stdout=stdout, layout=sink_format
                )
            )
        return StreamRunner(bundle, opened_source, opened, config, on_status=on_status)
    except BaseException:
        for sink in opened:
            sink.close()
        opened_source.close()
        raise


__all__ = [
    "Checkpoint",
    "FlowDecoder",
    "FrameSource",
    "Sink",
    "StreamConfig",
    "StreamRunner",
    "StreamSource",
    "StreamStats",
    "model_version",
    "open_sink",
    "open_source",
    "open_stream",
    "stop_on_signals",
]
