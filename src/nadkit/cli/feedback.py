"""The `retrain` command: the feedback loop that retrains on new traffic and analyst feedback and
compares the challenger with the active model."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from nadkit.cli.application import FormatOption, MapOption, app, arguments, console, errors, log, needs
from nadkit.cli.registry import RegistryOption, open_registry
from nadkit.errors import NadkitError


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _rate_with_interval(value: float | None, interval: tuple[float, float] | None) -> str:
    if value is None or interval is None:
        return _percent(value)
    return f"{value:.1%} \\[{interval[0]:.1%}, {interval[1]:.1%}]"


@app.command(cls=needs("BUNDLE", "DATA"), short_help="Retrain on feedback; compare with the active model.")
def retrain(
    db: Annotated[Path, typer.Option("--db", help="Alert store holding the analysts' feedback.")],
    bundle: Annotated[
        str | None,
        typer.Argument(
            metavar="BUNDLE",
            show_default=False,
            help="The active model: a bundle directory or a registry version (v1).",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Argument(
            metavar="DATA", show_default=False, help="New traffic to retrain on: file, directory or glob."
        ),
    ] = None,
    old_out: Annotated[str | None, typer.Argument(hidden=True, metavar="OUT")] = None,
    out: Annotated[
        str | None, typer.Option("--out", "-o", help="Challenger bundle directory to write.")
    ] = None,
    old_bundle: Annotated[str | None, typer.Option("--bundle", hidden=True)] = None,
    old_data: Annotated[str | None, typer.Option("--data", hidden=True)] = None,
    models: RegistryOption = None,
    config: Annotated[
        Path | None, typer.Option(help="Model settings overriding the active model's (e.g. epochs).")
    ] = None,
    weight: Annotated[
        int, typer.Option(min=1, max=1000, help="Times each flow marked benign is repeated in training.")
    ] = 10,
    feedback_holdout: Annotated[
        float,
        typer.Option(min=0.0, max=0.9, help="Share of the reviewed alerts kept out for the comparison."),
    ] = 0.3,
    holdout: Annotated[
        float, typer.Option(min=0.05, max=0.9, help="Share of normal traffic held out for the threshold.")
    ] = 0.3,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    min_held_out: Annotated[
        int,
        typer.Option(
            "--min-held-out", min=1, help="Held-out reviewed flows needed before a better model is named."
        ),
    ] = 50,
    min_per_kind: Annotated[
        int,
        typer.Option(
            "--min-per-kind",
            min=1,
            help="Of those, at least this many marked benign and as many confirmed attacks.",
        ),
    ] = 10,
    confidence: Annotated[
        float,
        typer.Option(min=0.5, max=0.999, help="Confidence of the rates' intervals (Wilson score)."),
    ] = 0.95,
    register: Annotated[
        bool, typer.Option("--register/--no-register", help="Register the challenger (never activated).")
    ] = True,
    format: FormatOption = None,
    mapping: MapOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output bundle.")] = False,
) -> None:
    """Retrain on new traffic and analyst feedback; compare the challenger with the active model on
    held-out feedback, naming a better model only when the feedback supports it."""
    from nadkit.alerts.store import AlertStore
    from nadkit.config import read_settings
    from nadkit.lifecycle.feedback import CHALLENGER_BETTER, NOT_ENOUGH_EVIDENCE, EvidenceRule
    from nadkit.lifecycle.feedback import retrain as retrain_model
    from nadkit.lifecycle.registry import resolve_bundle
    from nadkit.training.bundle import ModelBundle

    given = arguments(
        "retrain", {"BUNDLE": old_bundle, "DATA": old_data, "--out": out}, [bundle, data, old_out]
    )
    if old_bundle is not None or old_data is not None or out is None:
        log.info("nadkit retrain: --bundle, --data and the output as an argument are deprecated")
    bundle, data_path, out_path = given["BUNDLE"], Path(given["DATA"]), Path(given["--out"])
    if not db.is_file():
        raise NadkitError(f"{db}: no such alert store")
    evidence = EvidenceRule(flows=min_held_out, per_kind=min_per_kind, confidence=confidence)
    registry = open_registry(models, db)
    champion_path, version = resolve_bundle(bundle, registry)
    options = read_settings(config, "model settings") if config else {}
    champion = ModelBundle.load(champion_path)
    with (
        AlertStore(db) as store,
        errors.status(f"retraining {champion.detector.name} on {data_path} and feedback"),
    ):
        result = retrain_model(
            champion,
            store,
            data_path,
            out_path,
            champion_name=version or champion_path.name,
            config=options,
            format=format,
            mapping=mapping,
            feedback_holdout=feedback_holdout,
            benign_weight=weight,
            holdout_fraction=holdout,
            seed=seed,
            overwrite=force,
            evidence=evidence,
        )
    verdict = result.comparison.verdict
    outcome = verdict.outcome if verdict is not None else "not compared"
    registered = (
        registry.register(out_path, note=f"retrained from {version or champion_path}; {outcome}")
        if register
        else None
    )
    if as_json:
        payload = {
            **result.comparison.to_dict(),
            "feedback": result.feedback,
            "registered": registered.version if registered else None,
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    comparison = result.comparison
    challenger_name = registered.version if registered else comparison.challenger
    table = Table(title=f"{comparison.champion} (active) against the challenger {challenger_name}")
    table.add_column("measure")
    table.add_column("flows", justify="right")
    table.add_column(f"{comparison.champion} [{evidence.confidence:.0%} interval]", justify="right")
    table.add_column(f"{challenger_name} [{evidence.confidence:.0%} interval]", justify="right")
    table.add_column("better", justify="center")
    for measure in comparison.measures:
        if measure.name == "threshold":
            cells = [f"{v:.6g}" if v is not None else "-" for v in (measure.champion, measure.challenger)]
        else:
            cells = [
                _rate_with_interval(measure.champion, measure.champion_interval),
                _rate_with_interval(measure.challenger, measure.challenger_interval),
            ]
        mark = {
            "better": "[green]yes[/green]",
            "worse": "[red]no[/red]",
            "unclear": "[yellow]unclear[/yellow]",
            None: "",
        }[measure.evidence]
        table.add_row(measure.name, f"{measure.rows:,}" if measure.rows else "", *cells, mark)
    console.print(table)
    if verdict is not None:
        colour = {CHALLENGER_BETTER: "green", NOT_ENOUGH_EVIDENCE: "yellow"}.get(verdict.outcome, "red")
        console.print(f"[bold {colour}]{verdict.outcome}[/bold {colour}]: {escape(verdict.reason)}")
        if not verdict.enough_feedback:
            console.print(
                f"the minimum is set by --min-held-out ({evidence.flows}) and --min-per-kind "
                f"({evidence.per_kind}); review more alerts, or hold out more of them (--feedback-holdout)"
            )
    counts = result.feedback
    console.print(
        f"feedback: {counts['train_benign']} benign and {counts['train_attacks']} confirmed reviews "
        f"trained on, {counts['held_out_benign']} and {counts['held_out_attacks']} held out; "
        f"{result.dropped:,} traffic flows left out (alerts not cleared by an analyst)"
    )
    console.print(f"challenger written to [bold]{out_path}[/bold]")
    better = verdict is not None and verdict.challenger_better
    if registered is not None and better:
        console.print(
            f"registered as [bold]{registered.version}[/bold] (not active); activate with: "
            f"nadkit models activate {registered.version} --models {registry.root}"
        )
    elif registered is not None:
        console.print(
            f"registered as [bold]{registered.version}[/bold] (not active); the comparison gives no "
            f"reason to activate it: {comparison.champion} stays the active model"
        )
