"""The `nadkit` application: the Typer app the command modules register on, the shared consoles and
logger, the global options (--debug, --verbose, --version), the options that several commands share
and `main()`, the entry point that turns bad input into one line on stderr."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

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

_STATE = {"debug": False, "quiet": False}

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
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or progress lines.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """nadkit: network anomaly detection with deep learning."""
    _STATE["debug"] = debug
    _STATE["quiet"] = quiet
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


class ThrottledLines:
    """Progress as lines on stderr (for a log or a pipe, where a bar does not render): none for work
    done within :attr:`AFTER_S` seconds (so a quick command, or one that fails at once, prints only
    its result), then at most one every :attr:`EVERY_S` seconds and the last one; silent when
    ``quiet``. ``NADKIT_PROGRESS_AFTER_S`` sets the first delay."""

    EVERY_S = 5.0
    AFTER_S = 2.0

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self._started = time.monotonic()
        self._last = self._started
        try:
            self._after = float(os.environ.get("NADKIT_PROGRESS_AFTER_S", self.AFTER_S))
        except ValueError:
            self._after = self.AFTER_S
        self._shown = False

    def say(self, text: str, *, last: bool = False) -> None:
        now = time.monotonic()
        elapsed = now - self._started
        if self.quiet or elapsed < self._after:
            return
        if self._shown and now - self._last < self.EVERY_S and not last:
            return
        self._last, self._shown = now, True
        errors.print(f"{text} ({elapsed:.0f} s)", highlight=False, soft_wrap=True)


class FileSteps:
    """Progress over the files of an input (captures are metered one by one): a bar on a terminal,
    a line on stderr at most every few seconds otherwise (a log, a pipe), nothing with --quiet. Use as
    a context manager; :meth:`__call__` is the ``on_file`` callback of the readers."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.quiet = bool(_STATE["quiet"])
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        self.lines = ThrottledLines(quiet=self.quiet)

    def __enter__(self) -> FileSteps:
        if not self.quiet and errors.is_terminal:
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[file]}"),
                TimeElapsedColumn(),
                console=errors,
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(self.description, total=None, file="")
        return self

    def __call__(self, done: int, total: int, file: Path) -> None:
        if self.quiet:
            return
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=done, total=total, file=file.name)
            return
        self.lines.say(f"{self.description}: {done}/{total} files ({file.name})", last=done == total)

    def __exit__(self, *_: object) -> None:
        if self.bar is not None:
            self.bar.stop()


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
