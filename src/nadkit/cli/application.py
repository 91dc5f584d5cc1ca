"""The `nadkit` application: the Typer app the command modules register on, the shared consoles and
logger, the global options (--debug, --verbose, --version), the options that several commands share
and `main()`, the entry point that turns bad input into one line on stderr."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from typer.core import TyperArgument, TyperCommand

from nadkit.errors import NadkitError
from nadkit.version import __version__

T = TypeVar("T")


class Command(TyperCommand):
    """A command whose usage line names its arguments as the help does (``SOURCE``, ``[BUNDLE]``) and
    leaves out the hidden ones (the old spellings kept for scripts)."""

    #: arguments shown as required although the parser takes them as optional (an old option
    #: spelling may give them instead): see :func:`needs`
    needed: tuple[str, ...] = ()

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument) and not param.hidden:
                name = param.metavar or (param.name or "").upper()
                pieces.append(name if param.required or name in self.needed else f"[{name}]")
        return pieces


def needs(*names: str) -> type[Command]:
    """A :class:`Command` whose usage line shows the arguments ``names`` as required."""
    return type("Command", (Command,), {"needed": names})


class Typer(typer.Typer):
    """The Typer application of nadkit's commands and command groups: plain help (click's layout,
    which wraps whole words at the terminal's width, at most 80 columns) and :class:`Command`."""

    def __init__(self, **settings: Any) -> None:
        settings.setdefault("rich_markup_mode", None)
        settings.setdefault("no_args_is_help", True)
        super().__init__(**settings)

    def command(self, *args: Any, **settings: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        settings.setdefault("cls", Command)
        return super().command(*args, **settings)


app = Typer(
    name="nadkit",
    help="Detect anomalies and attacks in network traffic: read flows, train, detect, explain, triage.",
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


JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on standard output.")]


def print_json(data: object) -> None:
    """Write ``data`` as indented JSON on standard output (never wrapped or coloured)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def arguments(command: str, named: dict[str, T | None], given: list[T | None]) -> dict[str, T]:
    """A command's arguments, with their old option spellings still taken: each slot whose (old)
    option was given keeps that value, and the positional values fill the other slots in order. So
    ``stream -b MODEL -s -``, ``stream MODEL -`` and ``stream -b MODEL -`` read the same."""
    rest = [value for value in given if value is not None]
    chosen: dict[str, T] = {}
    for name, value in named.items():
        if value is None and rest:
            value = rest.pop(0)
        if value is None:
            raise NadkitError(f"nadkit {command}: missing {name} (see nadkit {command} --help)")
        chosen[name] = value
    if rest:
        raise NadkitError(f"nadkit {command}: unexpected argument {rest[0]!s} (see nadkit {command} --help)")
    return chosen


def output_path(command: str, option: Path | None, positional: Path | None) -> Path:
    """The output of a command that names it with ``--out``; the output as a last argument (the old
    spelling) is still taken."""
    if option is not None and positional is not None and option != positional:
        raise NadkitError(f"nadkit {command}: give the output once, with --out")
    chosen = option if option is not None else positional
    if chosen is None:
        raise NadkitError(f"nadkit {command}: name the output with --out (see nadkit {command} --help)")
    if option is None:
        log.info("nadkit %s: the output as a last argument is deprecated; use --out %s", command, chosen)
    return chosen


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
    max_decompressed_mb: Annotated[
        float | None,
        typer.Option(
            "--max-decompressed-mb",
            min=1,
            help="Refuse gzip input decompressing to more MiB (default 4096; NADKIT_MAX_DECOMPRESSED_MB).",
        ),
    ] = None,
    meter: Annotated[
        str | None,
        typer.Option(
            "--meter",
            help="What meters packet captures into flows: nfstream (the default: applications, packet "
            "statistics) or argus (Debian's argus-server and argus-client: several times faster, less "
            "in each flow); a model scores flows of the meter it was trained on (NADKIT_METER).",
        ),
    ] = None,
) -> None:
    """nadkit: network anomaly detection with deep learning."""
    if meter is not None:
        from nadkit.sources.argus_meter import METER_ENV, chosen_meter

        os.environ[METER_ENV] = chosen_meter(meter)
    if max_decompressed_mb is not None:
        from nadkit.sources.base import MAX_DECOMPRESSED_ENV

        os.environ[MAX_DECOMPRESSED_ENV] = f"{max_decompressed_mb:g}"
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
