"""The `models` command group: `models available` (the detectors nadkit can train), `models show`
(one detector's settings and their defaults), `models list`,
`models register` and `models activate` (the versions of a model registry), `models sign` (a bundle's
signature); and the registry and alert store options that `serve` and `retrain` share."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from nadkit.cli.application import JsonOption, Typer, app, console, print_json
from nadkit.errors import NadkitError

models_app = Typer(
    help="Registered model versions (list, register, activate, sign) and the detectors nadkit can train."
)
app.add_typer(models_app, name="models", short_help="Model versions, and the detectors nadkit can train.")

RegistryOption = Annotated[
    Path | None,
    typer.Option("--models", help="Model registry directory (default: models/ beside the --db file)."),
]
StoreOption = Annotated[Path | None, typer.Option("--db", help="Alert store file (SQLite).")]


def open_registry(models: Path | None, db: Path | None):  # type: ignore[no-untyped-def]
    """The model registry of --models, else the one beside the alert store of --db."""
    from nadkit.lifecycle.registry import ModelRegistry, default_registry

    if models is None and db is None:
        raise NadkitError("name the model registry with --models DIR (or the alert store with --db FILE)")
    return ModelRegistry(models if models is not None else default_registry(db))  # type: ignore[arg-type]


def _plain(text: str) -> str:
    """Docstring text for users: one line, without reStructuredText markup or references to the
    source."""
    text = " ".join(text.split())
    text = re.sub(r"\s*\((?:see|cf\.)[^)]*\)", "", text)
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text)
    return text.replace("``", "").replace("`", "")


def detector_summary(cls: type) -> str:
    """A detector's one line for users: its ``summary``, else its docstring's first sentence without
    reStructuredText markup or references to the source."""
    summary = str(getattr(cls, "summary", "") or "")
    if summary:
        return summary
    paragraph = (cls.__doc__ or "").strip().split("\n\n")[0]
    return _plain(" ".join(paragraph.split()).split(". ")[0].rstrip("."))


@models_app.command("available")
def models_available(as_json: JsonOption = False) -> None:
    """List the detectors nadkit can train."""
    from nadkit.models import REGISTRY

    rows = [
        {
            "name": name,
            "input": cls.input,
            "kind": "supervised" if cls.supervised else "unsupervised",
            "description": detector_summary(cls),
        }
        for name, cls in REGISTRY.items()
    ]
    if as_json:
        print_json(rows)
        return
    table = Table(title="Detectors")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("input")
    table.add_column("kind")
    table.add_column("description")
    for row in rows:
        table.add_row(row["name"], row["input"], row["kind"], row["description"])
    console.print(table)


@models_app.command("show")
def models_show(
    name: Annotated[str, typer.Argument(help="The detector, as `nadkit models available` names it.")],
    as_json: JsonOption = False,
) -> None:
    """Show a detector's settings and their defaults.

    What `nadkit train --config FILE` may set, with the prose that explains them.
    """
    import dataclasses

    from nadkit.models import REGISTRY

    cls = REGISTRY.get(name)
    if cls is None:
        raise NadkitError(f"unknown model {name!r} (known: {', '.join(sorted(REGISTRY))})")
    config = cls.config_class()
    settings = [
        {"setting": item.name, "default": _shown(getattr(config, item.name)), "type": str(item.type)}
        for item in dataclasses.fields(config)
    ]
    about = _plain(cls.config_class.__doc__ or "")
    if as_json:
        print_json(
            {
                "name": name,
                "input": cls.input,
                "kind": "supervised" if cls.supervised else "unsupervised",
                "description": detector_summary(cls),
                "settings": settings,
                "about": about,
            }
        )
        return
    kind = "supervised" if cls.supervised else "unsupervised"
    console.print(f"[bold]{escape(name)}[/bold]: {escape(detector_summary(cls))} ({cls.input}, {kind})")
    if about:
        console.print(escape(about))
    table = Table(title=f"Settings of {name} (YAML, TOML or JSON in nadkit train --config)")
    table.add_column("setting", style="bold", no_wrap=True)
    table.add_column("default")
    table.add_column("type")
    for row in settings:
        table.add_row(row["setting"], escape(json.dumps(row["default"])), escape(row["type"]))
    console.print(table)


def _shown(value: object) -> object:
    """A setting's default as JSON shows it (tuples as lists, nested settings as mappings)."""
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _shown(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, tuple | list):
        return [_shown(v) for v in value]
    return value


@models_app.command("list")
def models_list(
    models: RegistryOption = None,
    db: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the versions as JSON.")] = False,
) -> None:
    """List the model versions of a registry (the active one marked)."""
    registry = open_registry(models, db)
    versions = registry.list()
    if as_json:
        sys.stdout.write(json.dumps([v.to_dict() for v in versions], indent=2) + "\n")
        return
    if not versions:
        console.print(f"no model registered in {registry.root}")
        return
    table = Table(title=f"Model versions in {registry.root}")
    for column in ("version", "active", "model", "created", "threshold", "hold-out F1", "source"):
        table.add_column(column, justify="right" if column in ("threshold", "hold-out F1") else "left")
    for version in versions:
        f1 = version.metrics.get("f1")
        table.add_row(
            version.version,
            "[bold green]active[/bold green]" if version.active else "",
            version.model,
            version.created,
            f"{version.threshold:.6g}" if version.threshold is not None else "-",
            f"{f1:.4f}" if isinstance(f1, float) else "-",
            version.source,
        )
    console.print(table)


@models_app.command("register", short_help="Copy a model bundle into the registry as a new version.")
def models_register(
    bundle: Annotated[
        Path, typer.Argument(metavar="BUNDLE", help="Model bundle directory to copy into the registry.")
    ],
    models: RegistryOption = None,
    db: StoreOption = None,
    note: Annotated[str, typer.Option(help="A note kept with the version.")] = "",
    activate: Annotated[bool, typer.Option("--activate", help="Also make it the active version.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Copy a model bundle into the registry as a new version (the same bundle twice: one version)."""
    registry = open_registry(models, db)
    version = registry.register(bundle, note=note)
    if activate:
        registry.activate(version.version)
    if as_json:
        print_json(
            {
                "bundle": str(bundle),
                "version": version.version,
                "registry": str(registry.root),
                "active": registry.active_version() == version.version,
            }
        )
        return
    console.print(f"{bundle} registered as [bold]{version.version}[/bold] in {registry.root}")
    if activate:
        console.print(f"[bold]{version.version}[/bold] is now the active model")


@models_app.command("activate", short_help="Make a registered version the active model.")
def models_activate(
    version: Annotated[
        str,
        typer.Argument(metavar="VERSION", help="Version to activate, e.g. v2 (see `nadkit models list`)."),
    ],
    models: RegistryOption = None,
    db: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make a registered version the active model (a running service switches to it)."""
    registry = open_registry(models, db)
    previous = registry.active_version()
    activated = registry.activate(version)
    if as_json:
        print_json({"version": activated.version, "model": activated.model, "previous": previous})
        return
    console.print(
        f"[bold]{activated.version}[/bold] ({activated.model}) is now the active model"
        + (f" (was {previous})" if previous and previous != activated.version else "")
    )


@models_app.command("sign", short_help="Sign a model bundle with the key in NADKIT_BUNDLE_KEY.")
def models_sign(
    bundle: Annotated[
        str,
        typer.Argument(
            metavar="BUNDLE", help="Model bundle directory, or a registered version (v2) with --models/--db."
        ),
    ],
    models: RegistryOption = None,
    db: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sign a model bundle with the key in NADKIT_BUNDLE_KEY (signature.json: an HMAC-SHA256 over the
    manifest and every file); loading with the key set then refuses unsigned or altered bundles."""
    from nadkit.lifecycle.registry import resolve_bundle
    from nadkit.training.bundle import sign

    registry = open_registry(models, db) if models is not None or db is not None else None
    path, _ = resolve_bundle(bundle, registry)
    signature = sign(path)
    if as_json:
        print_json({"bundle": str(path), "signature": str(signature)})
        return
    console.print(f"{path} signed ({signature})")
