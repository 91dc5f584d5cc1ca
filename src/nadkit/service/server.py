"""Running the service application on a listening socket until it is asked to stop."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """A uvicorn server that, once it has shut down gracefully on SIGINT or SIGTERM, returns to its
    caller (which then exits normally) instead of raising the signal again."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()


def run(app: Any, listener: socket.socket) -> None:
    """Serve ``app`` on the bound, listening socket ``listener`` until SIGINT or SIGTERM."""
    config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False)
    server = _Server(config)
    server.run(sockets=[listener])
    log.info("service stopped")
