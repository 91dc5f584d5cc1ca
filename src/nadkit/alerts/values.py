"""What the alert store and its incident book share: the verdicts, the limits on analysts' text, the
store's errors, and how times and texts are checked and written."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Final

from nadkit.alerts.records import STRFTIME_FORMAT
from nadkit.errors import NadkitError

#: the verdicts an analyst can give
VERDICTS: Final = ("confirmed", "false_positive", "known_benign")
#: an alert's review status: ``new`` (not reviewed yet) or its latest verdict
STATUSES: Final = ("new", *VERDICTS)
#: verdicts that say the flow is not an attack
BENIGN_VERDICTS: Final = ("false_positive", "known_benign")
MAX_NOTE = 4000
MAX_NAME = 200


class StoreError(NadkitError):
    """The alert store cannot be opened or used as asked (bad file, bad value, newer schema)."""


class AlertNotFoundError(StoreError):
    """No alert has the given id."""


def now_text() -> str:
    """The current UTC time as the store writes times."""
    return datetime.now(UTC).strftime(STRFTIME_FORMAT)


def time_text(value: datetime | date | str | None) -> str | None:
    """A time as the store writes it (UTC, ISO-8601 with microseconds and ``Z``); naive times are
    UTC. Text is parsed as ISO-8601 first. :class:`StoreError` for a value that is not a time."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise StoreError(f"not an ISO-8601 time: {value!r}") from None
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    try:
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime(STRFTIME_FORMAT)
    except (OverflowError, ValueError) as error:
        raise StoreError(f"time out of range: {value!r} ({error})") from None


def _check_text(name: str, value: str | None, *, required: bool = False, limit: int = MAX_NAME) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise StoreError(f"{name}: required")
        return None
    if not isinstance(value, str):
        raise StoreError(f"{name}: must be text")
    if len(value) > limit:
        raise StoreError(f"{name}: longer than {limit} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise StoreError(f"{name}: not valid Unicode text") from None
    if "\x00" in value:
        raise StoreError(f"{name}: contains a NUL character")
    return value.strip()
