"""The `train` command, and the tables it ends with."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from nadkit.cli.application import (
    _STATE,
    BadRowsOption,
    FormatOption,
    JsonOption,
    MapOption,
    ThrottledLines,
    app,
    bad_rows,
    console,
    errors,
    output_path,
    print_json,
)
from nadkit.errors import NadkitError

if TYPE_CHECKING:
    from nadkit.training.choice import Choice
    from nadkit.training.fit import TrainingResult


#: train options that set a threshold parameter: option -> (parameter, the methods that take it)
_THRESHOLD_OPTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "--fpr": ("false_positive_rate", ("auto", "quantile")),
    "--max-fpr": ("max_false_positive_rate", ("auto",)),
    "--beta": ("beta", ("auto", "f_beta")),
    "--risk": ("risk", ("pot",)),
}


@app.command(short_help="Train a detector and save it as a model bundle.")
def train(
    source: Annotated[
        Path, typer.Argument(metavar="SOURCE", help="Training flows: file, directory or glob.")
    ],
    old_out: Annotated[Path | None, typer.Argument(hidden=True, metavar="OUT")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Model bundle directory to write.")] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Detector name (see `nadkit models available`); default ae."),
    ] = None,
    auto: Annotated[
        bool,
        typer.Option(
            "--auto",
            help="Train each of --candidates and keep the one that ranks the labelled attacks of the "
            "hold-out best (PR-AUC); needs at least 10 attack rows. The table lists every candidate.",
        ),
    ] = False,
    candidates: Annotated[
        str | None,
        typer.Option(
            "--candidates",
            help="--auto: the unsupervised detectors to compare, comma-separated (default "
            "ae,vae,iforest,ecod), each with its default settings.",
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="Model settings (YAML, TOML or JSON), e.g. epochs, hidden sizes.")
    ] = None,
    target: Annotated[
        Path | None,
        typer.Option(
            help="Unlabelled flows of the traffic to be scored (e.g. a later day; file, directory or "
            "glob, any format) that a domain-adapting model (multitask) aligns to with CMD.",
        ),
    ] = None,
    label_column: Annotated[
        str,
        typer.Option(
            "--label-column", help="Column holding the class labels, e.g. attack_family for NSL-KDD."
        ),
    ] = "label",
    holdout: Annotated[
        float,
        typer.Option(
            min=0.05,
            max=0.9,
            help="Hold-out share: of the normal rows for unsupervised models (every attack row is held "
            "out too); of all labelled rows for supervised models (their validation part).",
        ),
    ] = 0.3,
    holdout_by: Annotated[
        str,
        typer.Option(
            "--holdout-by",
            help="How an unsupervised model's normal hold-out is drawn: rows (single rows at random), "
            "time (three stretches of consecutive flows: a threshold closer to its false-positive rate "
            "on traffic of other networks; for training spans of many days) or capture (whole "
            "captures: files of a directory or glob, or a mix's capture column; for traffic of other "
            "devices).",
        ),
    ] = "rows",
    threshold_method: Annotated[
        str,
        typer.Option(
            "--threshold-method",
            help="How the threshold is fitted on the hold-out: auto (F-beta-optimal when it has attacks, "
            "else quantile), quantile, f_beta or pot.",
        ),
    ] = "auto",
    fpr: Annotated[
        float | None,
        typer.Option(
            "--fpr",
            help="quantile (and auto without attacks): share of normal scores above it (default 0.01).",
        ),
    ] = None,
    max_fpr: Annotated[
        float | None,
        typer.Option(
            "--max-fpr",
            help="auto with attacks: the most normal scores the threshold may flag (default 0.05).",
        ),
    ] = None,
    beta: Annotated[
        float | None,
        typer.Option(help="f_beta (and auto with attacks): beta of the F-beta score (default 1)."),
    ] = None,
    risk: Annotated[
        float | None,
        typer.Option(
            help="pot: probability of a normal score above the threshold, from a tail fit (default 1e-4)."
        ),
    ] = None,
    view: Annotated[
        str,
        typer.Option(
            help="What the detector reads: flows (one row per flow; windowed models read each source's "
            "flow sequence) or buckets (per-bucket traffic metrics; each flow gets its bucket's score).",
        ),
    ] = "flows",
    bucket_seconds: Annotated[
        float | None,
        typer.Option("--bucket-seconds", help="--view buckets: bucket width in seconds (default 60)."),
    ] = None,
    bucket_by: Annotated[
        str | None,
        typer.Option(
            "--bucket-by",
            help="--view buckets: one series per value of this column (e.g. src for each host); "
            "default: one series for the whole network.",
        ),
    ] = None,
    calendar: Annotated[
        bool | None,
        typer.Option(
            "--calendar/--no-calendar",
            help="Add the time of day and day of week (UTC) to what the model reads, each learnt when "
            "the training flows span its cycle. Default: on for the window models and the bucket view.",
            show_default=False,
        ),
    ] = None,
    names: Annotated[
        bool,
        typer.Option(
            "--names",
            help="Add the shape of the name each flow asked for (DNS query, TLS server name or HTTP "
            "host: length, labels, digits, entropy) and the user agent's length, where the flows carry "
            "them (captures).",
        ),
    ] = False,
    cadence: Annotated[
        bool,
        typer.Option(
            "--cadence",
            help="Add how often and how regularly each flow's source came back to its destination and "
            "service over the last hour (a timer's calls home, an automated tool's repeated requests), "
            "where the flows have times, addresses, protocol and destination port.",
        ),
    ] = False,
    slow_counters: Annotated[
        bool,
        typer.Option(
            "--slow-counters",
            help="Keep the traffic counters of the 60 s window, which unsupervised detectors leave "
            "out (they follow the hour's load): for short captures where slow scans and password "
            "guessing matter more than other hours' traffic.",
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    format: FormatOption = None,
    on_bad_rows: BadRowsOption = "error",
    mapping: MapOption = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing bundle.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Train a detector and save it, with its threshold and ONNX graph, as a model bundle.

    Unsupervised models learn normal traffic; supervised ones (multitask) learn the classes of
    labelled flows, optionally adapting to unlabelled --target traffic. With --view buckets an
    unsupervised model learns per-bucket traffic metrics; the last --holdout of the time range is then
    the hold-out.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from nadkit.config import read_settings
    from nadkit.features.series import BucketConfig
    from nadkit.models import REGISTRY
    from nadkit.models.multitask import SeedEpochReport
    from nadkit.training.choice import AUTO_CANDIDATES, train_chosen
    from nadkit.training.fit import default_features, train_model

    if not source.exists() and str(source) in REGISTRY:
        # ``nadkit train ae flows.csv``: the detector where the flows go
        raise NadkitError(
            f"nadkit train: {source} is a detector, not a file of flows: name it with --model "
            f"(nadkit train FLOWS --model {source} --out DIR)"
        )
    bundle = output_path("train", out, old_out)
    if auto and model is not None:
        raise NadkitError("--model names one detector; --auto chooses among --candidates")
    if candidates is not None and not auto:
        raise NadkitError("--candidates applies to --auto")
    if auto and config is not None:
        raise NadkitError("--auto trains each candidate with its default settings; leave --config out")
    chosen_among = tuple(candidates.split(",")) if candidates is not None else AUTO_CANDIDATES
    model = "--auto" if auto else (model or "ae")
    if view not in ("flows", "buckets"):
        raise NadkitError(f"--view must be flows or buckets, got {view!r}")
    if view == "flows" and (bucket_seconds is not None or bucket_by is not None):
        raise NadkitError("--bucket-seconds and --bucket-by apply to --view buckets")
    for given, option in ((names, "--names"), (cadence, "--cadence"), (slow_counters, "--slow-counters")):
        if given and view == "buckets":
            raise NadkitError(f"{option} applies to --view flows (a bucket reads its own traffic metrics)")
    buckets = None
    features = None
    if view == "buckets":
        buckets = BucketConfig(
            bucket_s=60.0 if bucket_seconds is None else bucket_seconds,
            by=bucket_by,
            calendar=True if calendar is None else calendar,
        )
    elif (calendar is not None or names or cadence or slow_counters) and model in REGISTRY:
        # an unknown model is named by train_model's own error
        features = default_features(
            REGISTRY[model], calendar=calendar, names=names, cadence=cadence, slow_counters=slow_counters
        )
    feature_options = {
        "calendar": calendar,
        "names": names,
        "cadence": cadence,
        "slow_counters": slow_counters,
    }

    given = {"--fpr": fpr, "--max-fpr": max_fpr, "--beta": beta, "--risk": risk}
    threshold_params: dict[str, float] = {}
    for option, value in given.items():
        if value is None:
            continue
        name, methods = _THRESHOLD_OPTIONS[option]
        if threshold_method not in methods:
            raise NadkitError(f"{option} applies to --threshold-method {' or '.join(methods)}")
        threshold_params[name] = value
    options = read_settings(config, "model settings") if config else {}
    quiet = bool(_STATE["quiet"])
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[step]}"),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
        disable=quiet or not errors.is_terminal,
    ) as bar:
        task = bar.add_task(f"training {model}", total=None, step="reading flows")
        lines = ThrottledLines(quiet=quiet or errors.is_terminal)

        def on_file(done: int, total: int, file: Path) -> None:
            step = f"reading flows: {done}/{total} files ({file.name})"
            bar.update(task, step=step)
            lines.say(f"training {model}: {step}", last=done == total)

        def on_stage(name: str) -> None:
            bar.update(task, step=name)
            lines.say(f"training {model}: {name}", last=True)

        def on_epoch(report) -> None:  # type: ignore[no-untyped-def]
            losses = f"train {report.train_loss:.4g}"
            if report.validation_loss is not None:
                losses += f", validation {report.validation_loss:.4g}"
            description = f"training {model}"
            if isinstance(report, SeedEpochReport) and report.seeds > 1:
                description += f" seed {report.seed_index}/{report.seeds}"
            step = f"epoch {report.epoch}/{report.epochs or '?'}: {losses}"
            bar.update(task, description=description, completed=report.epoch, total=report.epochs, step=step)
            lines.say(
                f"{description}: {step}", last=report.epochs is not None and report.epoch == report.epochs
            )

        common = {
            "format": format,
            "mapping": mapping,
            "holdout_fraction": holdout,
            "holdout_by": holdout_by,
            "seed": seed,
            "overwrite": force,
            "progress": on_epoch,
            "target": target,
            "label_column": label_column,
            "threshold_method": threshold_method,
            "threshold_params": threshold_params,
            "buckets": buckets,
            "on_bad_rows": bad_rows(on_bad_rows),
            "on_file": on_file,
            "on_stage": on_stage,
        }
        choice = None
        if auto:

            def on_candidate(name: str, index: int, count: int) -> None:
                nonlocal model
                model = f"{name} ({index}/{count} of --auto)"
                bar.update(task, description=f"training {model}", completed=0, total=None)

            choice = train_chosen(
                source,
                bundle,
                candidates=chosen_among,
                feature_options=feature_options,
                on_candidate=on_candidate,
                **common,
            )
            result, model = choice.result, choice.chosen
        else:
            result = train_model(source, bundle, model=model, config=options, features=features, **common)
    if as_json:
        print_json(_training_json(model, result))
        return
    console.print(_training_summary(model, result, target, auto=choice is not None))
    if result.supervised:
        console.print(_class_table(result))
    if choice is not None:
        console.print(_candidates_table(choice))


def _training_json(model: str, result: TrainingResult) -> dict[str, object]:
    """What `nadkit train --json` prints: the table's figures, for scripts."""
    metrics = result.bundle.metrics
    threshold = result.bundle.threshold
    histories = metrics.get("histories") or ([metrics["history"]] if metrics.get("history") else [])
    return {
        "model": model,
        "bundle": str(result.path),
        "onnx": result.onnx,
        "features": len(result.bundle.detector.feature_names_ or ()),
        "supervised": result.supervised,
        "buckets": result.buckets,
        "train_rows": result.train_rows,
        "holdout_rows": result.holdout_rows,
        "holdout_attacks": result.holdout_attacks,
        "weighing_rows": result.weighing_rows,
        "holdout_by": result.holdout_by or None,
        "held_out_captures": list(result.held_out_captures),
        "target_rows": result.target_rows,
        "classes": list(result.classes),
        "class_counts": result.class_counts,
        "fit_seconds": round(result.fit_seconds, 3),
        "epochs": [
            {key: history.get(key) for key in ("epochs_run", "best_epoch", "stopped")}
            for history in histories
        ],
        "threshold": None
        if threshold is None
        else {"value": threshold.value, "method": threshold.method, "description": threshold.describe()},
        "holdout": metrics.get("holdout"),
        "classification": metrics.get("classification"),
        "few_rows": few_rows_caution(result),
        "captures": result.captures,
        "captures_caution": captures_caution(result),
        "silent_buckets": result.silent_buckets if result.buckets else None,
        "silent_buckets_caution": silent_buckets_caution(result),
        "counter_windows": list(counter_windows(result)),
        "auto": metrics.get("auto"),
    }


#: how the normal hold-out was drawn, in words (``TrainingResult.holdout_by``)
HOLDOUT_WAYS = {
    "rows": "single rows at random",
    "time": "stretches of consecutive flows",
    "capture": "whole captures",
}

#: the counter windows in words, by name (:data:`~nadkit.features.counters.COUNTER_WINDOWS`)
WINDOW_WORDS = {"fast": "2 s", "slow": "60 s", "connections": "the last 100 connections"}


def counter_windows(result: TrainingResult) -> tuple[str, ...]:
    """The traffic counters' windows the model's features read (none where the flows have no
    counters, or the view is the time buckets)."""
    from nadkit.features.counters import COUNTER_WINDOWS, window_columns

    pipeline = result.bundle.pipeline
    if result.buckets or pipeline is None:
        return ()
    used = {column for columns in pipeline.raw_columns_.values() for column in columns}
    return tuple(name for name in COUNTER_WINDOWS if used & set(window_columns((name,))))


def _counters_text(result: TrainingResult) -> str | None:
    """The table's line on the traffic counters: their windows, and the minute's window left out."""
    windows = counter_windows(result)
    if not windows:
        return None
    pipeline = result.bundle.pipeline
    assert pipeline is not None
    text = ", ".join(WINDOW_WORDS[w] for w in windows)
    text += " (computed from the flows)" if pipeline.counters_computed_ else " (read from the source)"
    if "slow" not in pipeline.config.counter_windows:
        text += "; the 60 s window left out (it follows the hour's load): --slow-counters keeps it"
    return text


#: fewer normal training rows than this describe a short stretch of traffic (the README's few-rows
#: figures: 300 rows)
FEW_ROWS = 1000


def few_rows_caution(result: TrainingResult) -> str | None:
    """What `nadkit train` says of an unsupervised model trained on few normal rows, or whose threshold
    was read off the tail of a few hold-out scores (fewer than ten above the asked quantile); None
    otherwise."""
    threshold = result.bundle.threshold
    if result.supervised or result.buckets or threshold is None:
        return None
    tail = threshold.method == "quantile" and "peaks" in threshold.params
    if result.train_rows >= FEW_ROWS and not tail:
        return None
    said = f"{result.train_rows:,} normal training rows"
    if tail:
        said += (
            f"; the threshold was read off the tail of the {threshold.params['peaks']} largest of "
            f"{threshold.rows or result.holdout_rows:,} hold-out scores"
        )
    return (
        f"{said}: a model of a short stretch of traffic. Check its alert rate on a day of the traffic "
        "it will score (nadkit detect prints it) before trusting the threshold, or let nadkit stream "
        "--threshold spot adapt it; train on more normal traffic where there is some"
    )


#: captures from which on a hold-out of single rows makes `nadkit train` point to whole captures
SEVERAL_CAPTURES = 3


def captures_caution(result: TrainingResult) -> str | None:
    """What `nadkit train` says of a model of several captures whose threshold was set on single rows
    of them (``benchmarks/holdout.py``: on other devices' captures such a threshold flagged over a
    third of their normal flows); None otherwise."""
    if result.holdout_by != "rows" or result.captures < SEVERAL_CAPTURES:
        return None
    return (
        f"{result.captures} captures, the threshold set on single rows held out of them: it holds for "
        "traffic of the same devices. For traffic of other devices, --holdout-by capture sets it on "
        "whole captures the model did not train on (a higher threshold, and less to learn from)"
    )


def silent_buckets_caution(result: TrainingResult) -> str | None:
    """What `nadkit train` says of a bucket-view model whose training buckets are mostly empty (flows
    in short stretches far apart, such as captures of different dates); None otherwise."""
    from nadkit.features.series import SILENT_SHARE

    quiet = result.silent_buckets >= SILENT_SHARE * result.train_rows
    if not (result.buckets and result.train_rows and quiet):
        return None
    return (
        f"{result.silent_buckets:,} of {result.train_rows:,} training buckets hold no flow: the flows come "
        "in short stretches far apart in time (captures of different dates?), so the model learns mostly "
        "silence. Put captures in one window first (nadkit mix-captures --benign DIR -o benign.parquet) "
        "or train on one continuous stretch of traffic"
    )


def _training_summary(
    model: str, result: TrainingResult, target: Path | None, *, auto: bool = False
) -> Table:
    """The table `nadkit train` ends with: what was trained on, how, and what was measured (``auto``:
    the model was kept by `--auto`)."""
    metrics = result.bundle.metrics
    summary = Table(title=f"{model} trained" + (" (kept by --auto)" if auto else ""), show_header=False)
    summary.add_row("bundle", f"{result.path} ({'with' if result.onnx else 'without'} model.onnx)")
    features = result.bundle.detector.feature_names_ or ()
    if result.buckets:
        view = result.bundle.view
        assert view is not None
        over = f"per {view.config.by}" if view.config.by else "whole network"
        summary.add_row("view", f"time buckets of {view.config.bucket_s:g} s, {over}")
        summary.add_row("features", f"{len(features)} bucket metrics")
    else:
        summary.add_row("features", str(len(features)))
    counters = _counters_text(result)
    if counters:
        summary.add_row("traffic counters", counters)
    if result.supervised:
        summary.add_row("labelled training rows", f"{result.train_rows:,}")
        method = (metrics.get("split") or {}).get("method", "")
        summary.add_row(
            "validation rows (attacks)",
            f"{result.holdout_rows:,} ({result.holdout_attacks:,}); {method} split",
        )
        summary.add_row("classes", ", ".join(result.classes))
        share = metrics.get("network_weight")
        if share:
            summary.add_row("network's share of the average", _share_text(share))
        if target is not None:
            summary.add_row("CMD target rows", f"{result.target_rows:,} unlabelled, from {target}")
        else:
            summary.add_row("CMD target rows", "none (no --target: no domain adaptation)")
    elif result.buckets:
        summary.add_row("training buckets", f"{result.train_rows:,} (of normal flows)")
        since = (metrics.get("view") or {}).get("holdout_from", "")
        held = f"{result.holdout_rows:,} ({result.holdout_attacks:,}), from {since}"
        summary.add_row("hold-out flows (attacks)", held)
    else:
        if result.class_counts.get("holdout"):
            summary.add_row("normal training rows", f"{result.train_rows:,}")
            held = f"{result.holdout_rows:,} ({result.holdout_attacks:,})"
            summary.add_row("hold-out rows (attacks)", held)
        else:
            summary.add_row("training rows (unlabelled, taken as normal)", f"{result.train_rows:,}")
            summary.add_row("hold-out rows (unlabelled)", f"{result.holdout_rows:,}")
        summary.add_row("hold-out drawn as", HOLDOUT_WAYS.get(result.holdout_by, result.holdout_by))
        if result.held_out_captures:
            captures = result.held_out_captures
            summary.add_row(f"captures held out ({len(captures)})", ", ".join(captures))
        if result.weighing_rows:
            summary.add_row("errors weighed on", f"{result.weighing_rows:,} other normal hold-out rows")
    summary.add_row("fit time", f"{result.fit_seconds:.1f} s")
    histories = metrics.get("histories") or ([metrics["history"]] if metrics.get("history") else [])
    for index, history in enumerate(histories, start=1):
        label = "epochs" if len(histories) == 1 else f"epochs, seed {index}/{len(histories)}"
        text = f"{history['epochs_run']} (best {history['best_epoch']}, stopped by {history['stopped']})"
        runs = int(history["epochs_run"])
        if history["stopped"] == "epochs" and history["best_epoch"] >= runs - max(1, runs // 20):
            # the validation loss still fell in the last epochs: the model may not have converged
            text += "; still improving at the end: more epochs (--config with epochs) may help"
        summary.add_row(label, text)
    threshold = result.bundle.threshold
    if threshold is not None:
        summary.add_row("threshold", f"{threshold.value:.6g} ({threshold.describe()})")
    caution = few_rows_caution(result)
    if caution:
        summary.add_row("[yellow]few normal rows[/yellow]", caution)
    silence = silent_buckets_caution(result)
    if silence:
        summary.add_row("[yellow]silent buckets[/yellow]", silence)
    several = captures_caution(result)
    if several:
        summary.add_row("several captures", several)
    where = "validation" if result.supervised else "hold-out"
    measured = metrics.get("holdout")
    if measured:
        figures = f"{measured['roc_auc']:.4f} / {measured['pr_auc']:.4f} / {measured['f1']:.4f}"
        summary.add_row(f"{where} ROC-AUC / PR-AUC / F1", f"{figures} (threshold chosen here)")
    classification = metrics.get("classification")
    if classification:
        summary.add_row(f"{where} macro F1 of the classes", f"{classification['macro_f1']:.4f}")
        if "nad_score" in classification:
            summary.add_row(f"{where} NAD 2021 score", f"{classification['nad_score']:.4f}")
    return summary


def _candidates_table(choice: Choice) -> Table:
    """The candidates of `nadkit train --auto`, as measured on the shared hold-out."""
    table = Table(title="--auto: candidates on the same hold-out (PR-AUC chooses)")
    table.add_column("model")
    for column in ("ROC-AUC", "PR-AUC", "F1 at its threshold", "fit s"):
        table.add_column(column, justify="right")
    for row in choice.candidates:
        name = f"[bold]{row.model}[/bold] (kept)" if row.model == choice.chosen else row.model
        figures = (f"{row.roc_auc:.4f}", f"{row.pr_auc:.4f}", f"{row.f1:.4f}", f"{row.fit_seconds:.1f}")
        table.add_row(name, *figures)
    table.caption = "each on the hold-out its threshold was chosen on: optimistic, and the kept one more so"
    return table


def _class_table(result: TrainingResult) -> Table:
    """Rows of each class in the training and validation parts of a supervised model."""
    table = Table(title="classes")
    table.add_column("class")
    table.add_column("training rows", justify="right")
    table.add_column("validation rows", justify="right")
    train, held = result.class_counts.get("train", {}), result.class_counts.get("holdout", {})
    for name in [*result.classes, *sorted(set(held) - set(result.classes))]:
        table.add_row(name, f"{train.get(name, 0):,}", f"{held.get(name, 0):,}")
    return table


def _share_text(choice: dict[str, object]) -> str:
    """A hybrid's share of the network and where it came from, for the training summary."""
    weight = choice.get("network_weight")
    where = {
        "fixed": "fixed in the config",
        "default": "the default: no labelled rows to choose it on",
        "later rows": "chosen on the latest rows by time, with a probe trained on the earlier ones",
        "validation part": "chosen on the validation part",
    }.get(str(choice.get("chosen_on")), str(choice.get("chosen_on")))
    return f"{weight} ({where})"
