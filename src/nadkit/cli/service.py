"""The `serve` command: the alert service (scoring API, alert store, triage page, metrics)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from nadkit.cli.application import app, console, errors
from nadkit.cli.registry import RegistryOption, open_registry
from nadkit.errors import NadkitError, require


@app.command(short_help="Run the alert service: scoring API, store, triage page.")
def serve(
    db: Annotated[Path, typer.Option("--db", help="Alert store file (SQLite; created when missing).")],
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle",
            "-b",
            help="Model bundle to register and activate (default: the registry's active version).",
        ),
    ] = None,
    models: RegistryOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port).")] = 8000,
    config: Annotated[
        Path | None,
        typer.Option(
            help="Service settings (YAML, TOML or JSON): token, max_body_mb, max_flows, engine, top."
        ),
    ] = None,
    insecure_localhost: Annotated[
        bool,
        typer.Option("--insecure-localhost", help="Run without a token; forces listening on 127.0.0.1 only."),
    ] = False,
    engine: Annotated[str | None, typer.Option(help="Scoring engine: auto, torch or onnx.")] = None,
) -> None:
    """Run the alert service: scoring API, alert store, triage page at /, metrics (token from
    NADKIT_TOKEN or the settings file)."""
    import socket

    from nadkit.config import read_settings
    from nadkit.service.settings import LOOPBACK, Settings, token_from

    require("fastapi", "the alert service (nadkit serve)", "service")
    require("uvicorn", "the alert service (nadkit serve)", "service")

    options = read_settings(config, "service settings") if config else {}
    known = {"token", "max_body_mb", "max_flows", "engine", "top", "scoring_slots", "bundle_key"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise NadkitError(
            f"{config}: unknown service setting {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )
    token = token_from(settings=options)
    if insecure_localhost and host != LOOPBACK:
        errors.print(f"[yellow]--insecure-localhost: listening on {LOOPBACK}, not {host}[/yellow]")
        host = LOOPBACK
    try:
        settings = Settings(
            db=db,
            registry=models,
            token=token,
            insecure_localhost=insecure_localhost,
            max_body_bytes=int(float(options.get("max_body_mb", 32)) * 1024 * 1024),
            max_flows=int(options.get("max_flows", 200_000)),
            engine=engine or str(options.get("engine", "auto")),
            top=int(options.get("top", 5)),
            scoring_slots=int(options.get("scoring_slots", 2)),
            **({"bundle_key": str(options["bundle_key"])} if options.get("bundle_key") else {}),
        )
    except (TypeError, ValueError) as error:
        raise NadkitError(f"{config}: invalid service setting ({error})") from None
    if bundle is not None and not bundle.is_dir():
        raise NadkitError(f"{bundle}: no such model bundle directory")
    registry = open_registry(models, db)
    if bundle is None and registry.active_version() is None:
        raise NadkitError(f"{registry.root}: no active model; start with --bundle DIR")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise NadkitError(f"cannot listen on {host}:{port} ({error.strerror or error})") from None
    listener.listen(256)
    listener.setblocking(False)
    if bundle is not None:
        version = registry.register(bundle)
        if registry.active_version() != version.version:
            registry.activate(version.version, by="serve")
        console.print(f"model {bundle} registered as [bold]{version.version}[/bold] and active")
    _serve(settings, listener, host)


def _serve(settings, listener, host: str) -> None:  # type: ignore[no-untyped-def]
    from nadkit.service import create_app
    from nadkit.service.server import run

    application = create_app(settings)
    bound = listener.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    console.print(
        f"nadkit service on [bold]http://{shown}:{bound}/[/bold] "
        f"(model {application.state.service.models.version}, store {settings.db}, "
        f"registry {settings.registry_dir}"
        + (", [yellow]no token[/yellow]" if not settings.auth_required else ", bearer token required")
        + ")",
        highlight=False,
    )
    sys.stdout.flush()
    run(application, listener)
    console.print("service stopped")
