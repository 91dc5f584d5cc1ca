"""Pictures of the stored alerts: the flow-groups picture, the analysts' verdicts beside the model's
classes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import polars as pl
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from nadkit.errors import ConfigError, SchemaError
from nadkit.schema import NORMAL
from nadkit.service.routers.common import errors, service_of
from nadkit.service.schemas import Status

router = APIRouter(prefix="/v1/pictures", tags=["pictures"])

#: the most alerts one picture draws (the newest of those that match)
MAX_ALERTS = 100_000
#: the verdict panel's name for alerts nobody has reviewed yet, and its neutral colour
UNREVIEWED = "unreviewed"
UNREVIEWED_COLOUR = "#8d939b"
COLUMNS = ("time", "src", "dst", "spt", "dpt", "proto", "app")
Colouring = Literal["verdict,class", "verdict", "class", "score", "verdict,score"]
TITLES = {"label": "analyst verdict", "prediction": "model's class"}


def verdict_of(alert: dict[str, Any]) -> str:
    """What the analysts said of an alert, as a class: the confirmed class, ``normal`` for a false
    positive or known benign flow, :data:`UNREVIEWED` otherwise."""
    status = alert.get("status")
    if status == "confirmed":
        return str(alert.get("confirmed_class") or "attack")
    if status in ("false_positive", "known_benign"):
        return NORMAL
    return UNREVIEWED


def alerts_frame(alerts: list[dict[str, Any]]) -> pl.DataFrame:
    """The stored alerts as a flow table the picture draws: their flow fields, ``label`` (the
    verdict), ``class`` (the model's class, ``alert`` for an unsupervised model), score and threshold."""
    records = [
        {
            **{name: alert.get(name) for name in COLUMNS},
            "label": verdict_of(alert),
            "class": alert.get("class") or "alert",
            "score": float(alert["score"]),
            "threshold": float(alert["threshold"]),
        }
        for alert in alerts
    ]
    schema = {
        "time": pl.String,
        "src": pl.String,
        "dst": pl.String,
        "spt": pl.Int64,
        "dpt": pl.Int64,
        "proto": pl.String,
        "app": pl.String,
        "label": pl.String,
        "class": pl.String,
        "score": pl.Float64,
        "threshold": pl.Float64,
    }
    frame = pl.DataFrame(records, schema=schema)
    return frame.with_columns(
        pl.col("time").str.to_datetime(time_zone="UTC", strict=False, time_unit="us")
    ).filter(pl.col("time").is_not_null())


@router.get(
    "/groups",
    summary="The flow-groups picture of the stored alerts (PNG)",
    description=(
        "Alerts grouped by a key, one column per group, time running down, each cell coloured by the "
        "class most of its alerts have: the analysts' verdicts (confirmed class, normal for false "
        "positives and known benign flows, unreviewed) beside the model's classes, or by score. "
        f"Draws the newest {MAX_ALERTS:,} alerts that match the filters."
    ),
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "the picture"}, **errors(404, 422)},
)
def groups_picture(
    request: Request,
    by: Annotated[
        str,
        Query(
            max_length=200,
            pattern=r"^[A-Za-z_][A-Za-z0-9_/]*(,[A-Za-z_][A-Za-z0-9_/]*)?$",
            description="grouping keys: src_port,dst_port | src,dst | src_subnet,dst_subnet | proto,app",
        ),
    ] = "src_port,dst_port",
    color: Annotated[Colouring, Query(description="panels side by side")] = "verdict,class",
    status: Annotated[list[Status] | None, Query(description="review status (repeat for several)")] = None,
    attack_class: Annotated[
        str | None, Query(alias="class", max_length=200, description="predicted or confirmed class")
    ] = None,
    min_score: Annotated[float | None, Query(ge=-1e300, le=1e300)] = None,
    since: Annotated[datetime | None, Query(description="flow time from (inclusive)")] = None,
    until: Annotated[datetime | None, Query(description="flow time until (exclusive)")] = None,
    width: Annotated[int, Query(ge=100, le=2000)] = 700,
    height: Annotated[int, Query(ge=100, le=2000)] = 400,
) -> Response:
    from nadkit.pictures import draw_groups

    store = service_of(request).store
    alerts = store.list_alerts(
        status=status,
        attack_class=attack_class,
        min_score=min_score,
        since=since,
        until=until,
        limit=MAX_ALERTS,
        order="time_desc",
    )
    frame = alerts_frame(alerts)
    if frame.height == 0:
        raise HTTPException(404, "no stored alert with a flow time matches these filters")
    colourings = [{"verdict": "label", "class": "prediction"}.get(part, part) for part in color.split(",")]
    try:
        picture = draw_groups(
            frame,
            by=by,
            color=colourings,
            width=width,
            height=height,
            title=f"{frame.height:,} stored alerts grouped over time",
            source="the alert store",
            panel_titles=TITLES,
            colours={UNREVIEWED: UNREVIEWED_COLOUR},
        )
    except (ConfigError, SchemaError) as error:
        raise HTTPException(422, str(error)) from None
    return Response(picture.png, media_type="image/png", headers={"Cache-Control": "no-store"})
