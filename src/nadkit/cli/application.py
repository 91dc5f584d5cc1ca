"""The `nadkit` application: the Typer app the command modules register on, the shared consoles and
logger, the global options (--debug, --verbose, --version), the options that several commands share
and `main()`, the entry point that turns bad input into one line on stderr."""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from nadkit.errors import NadkitError
from nadkit.version import __version__

app = typer.Typer(
    name="nadkit",
    help="Detect anomalies and attacks in network traffic: read flows, train, detect, explain, triage.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)
console = Console()
errors = Console(stderr=True)
log = logging.getLogger("nadkit")

_STATE = {"debug": False}

FormatOption = Annotated[
    str | None,
    typer.Option("--format", "-f", help="Input format (skip auto-detection); see `nadkit formats`."),
]
BadRowsOption = Annotated[
    str,
    typer.Option(
        "--on-bad-rows",
        help="error: stop at the first invalid row, naming it; skip: drop invalid rows and count them.",
    ),
]
MapOption = Annotated[
    str | None,
    typer.Option(
        "--map",
        help="Column mapping for any CSV/Parquet, e.g. time=StartTime,src=SrcAddr,dst=DstAddr",
    ),
]


def bad_rows(value: str) -> Literal["error", "skip"]:
    """The checked value of ``--on-bad-rows``."""
    if value not in ("error", "skip"):
        raise NadkitError(f"--on-bad-rows must be error or skip, not {value!r}")
    return value  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        console.print(f"nadkit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logging.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Informational logging.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """nadkit: network anomaly detection with deep learning."""
    _STATE["debug"] = debug
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[
            RichHandler(
                console=errors, show_path=debug, rich_tracebacks=debug, log_time_format="[%Y-%m-%dT%H:%M:%S]"
            )
        ],
        force=True,
    )


def main() -> None:
    """Entry point: bad input ends as one line on stderr and exit code 2."""
    try:
        app()
    except NadkitError as error:
        if _STATE["debug"]:
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        errors.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (OSError, ValueError) as error:
        if _STATE["debug"]:
            raise
        errors.print(f"[bold red]error:[/bold red] {escape(str(error))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        errors.print("interrupted")
        sys.exit(130)
