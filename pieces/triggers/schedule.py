"""The `schedule` trigger: `ScheduleConfig`, `next_fire_times` and the Prefect schedule it becomes.

A schedule trigger holds exactly one of `cron` (five fields or a macro such as `@daily`),
`interval_seconds` or `rrule` (RFC 5545), an optional IANA `timezone` (default UTC) and `active`.
The deployment sync turns it into a Prefect deployment schedule (`to_deployment_schedule`), and
`next_fire_times` computes upcoming runs with the very code Prefect's scheduler service runs
(`prefect.server.schemas.schedules`), so what the API shows is what Prefect will schedule,
daylight-saving quirks included.

Validating a `ScheduleConfig` imports no Prefect at all (importing Prefect's server schedules
costs over a second, which a service would pay on its first request): cron expressions are read
by Prefect's own vendored `croniter` module, loaded from its file, and rrules by
`dateutil.rrule`, the library Prefect uses, normalised and localised the way Prefect's scheduler
does (`_prefect_rrule`). A test compares both verdicts with Prefect's on a corpus.
Building deployments and computing fire times still import Prefect, lazily.

Example:
    ```python
    config = ScheduleConfig(cron="0 2 * * *", timezone="Europe/Istanbul")
    next_fire_times(config, after=datetime(2026, 3, 28, tzinfo=UTC), count=2)
    # [2026-03-28 02:00+03:00, 2026-03-29 02:00+03:00]
    ```
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import re
import sys
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar
from zoneinfo import ZoneInfo, available_timezones

from pydantic import ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from pieces.base import StrictModel, TriggerPiece, TriggerStrategy
from pieces.triggers._schema import not_null

if TYPE_CHECKING:
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule, RRuleSchedule

    PrefectSchedule = CronSchedule | IntervalSchedule | RRuleSchedule

MAX_FIRE_TIMES = 1000
"""Prefect's schedules look at most this many candidate dates per call."""

INTERVAL_ANCHOR = datetime(2020, 1, 1)
"""Intervals count from local midnight of 2020-01-01 in the schedule's time zone (Prefect's own
anchor for rrules), so `interval_seconds: 3600` fires on the hour and re-syncing a deployment
never shifts its runs."""

CRON_MACROS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
_MAX_RRULE_LENGTH = 6500  # Prefect refuses longer rrule strings
_CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_NOT_IANA = frozenset({"localtime", "Factory", "posixrules"})  # files in tzdata, not zones
_DTSTART_TZID = re.compile(r"DTSTART;TZID=([^:;\s]+)", re.IGNORECASE)
_DTSTART_UTC = re.compile(r"DTSTART:\d{8}T\d{6}Z", re.IGNORECASE)


class ScheduleConfig(StrictModel):
    """The `schedule` trigger's own fields: exactly one of `cron`, `interval_seconds`, `rrule`."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["cron"]},
                {"required": ["interval_seconds"]},
                {"required": ["rrule"]},
            ]
        }
    )

    cron: str | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=not_null(),
        description=(
            "Five-field cron expression (minute hour day-of-month month day-of-week) or a macro "
            "(@hourly, @daily, @weekly, @monthly, @yearly), read in `timezone`."
        ),
        examples=["0 2 * * *", "*/15 9-17 * * MON-FRI"],
    )
    interval_seconds: int | SkipJsonSchema[None] = Field(
        default=None,
        ge=1,
        json_schema_extra=not_null(),
        description=(
            "Fire every this many seconds, counted from 2020-01-01 00:00 in `timezone` "
            "(so 3600 fires on the hour, 86400 at local midnight)."
        ),
    )
    rrule: str | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=not_null(),
        max_length=_MAX_RRULE_LENGTH,
        description=(
            "RFC 5545 recurrence rule, e.g. FREQ=WEEKLY;BYDAY=MO;BYHOUR=9. Without DTSTART "
            "it starts at 2020-01-01 00:00 in `timezone`; a DTSTART;TZID=... sets the zone."
        ),
        examples=["FREQ=WEEKLY;BYDAY=MO,WE,FR;BYHOUR=9;BYMINUTE=0"],
    )
    timezone: str | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=not_null(),
        description="IANA time zone name the schedule is read in, e.g. Europe/Istanbul. "
        "Default: UTC (or the rrule's DTSTART;TZID).",
        examples=["Europe/Istanbul", "America/New_York"],
    )
    active: bool = Field(
        default=True, description="Whether the schedule creates runs; false pauses it."
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is not None:
            check_timezone(value)
        return value

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        return None if value is None else check_cron(value)

    @field_validator("rrule")
    @classmethod
    def _valid_rrule(cls, value: str | None) -> str | None:
        return None if value is None else check_rrule(value)

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> ScheduleConfig:
        given = [
            name
            for name in ("cron", "interval_seconds", "rrule")
            if getattr(self, name) is not None
        ]
        if len(given) != 1:
            got = " and ".join(f"`{name}`" for name in given) if given else "none"
            raise ValueError(
                f"a schedule needs exactly one of `cron`, `interval_seconds` or `rrule`; got {got}"
            )
        if self.rrule is not None:
            rrule_timezone(self.rrule, self.timezone)  # raises on a contradiction
        _check_prefect_expands(self)
        return self

    @property
    def effective_timezone(self) -> str:
        """The IANA zone the schedule is read in: `timezone`, else the rrule's TZID, else UTC."""
        if self.rrule is not None:
            return rrule_timezone(self.rrule, self.timezone)
        return self.timezone or "UTC"


def next_fire_times(config: ScheduleConfig, after: datetime, count: int) -> list[datetime]:
    """The next `count` times the schedule fires strictly after `after`, as Prefect computes them.

    Args:
        config: a validated schedule trigger.
        after: a timezone-aware moment; a fire time equal to it is not included.
        count: how many times to return, 1 to 1000.

    Returns:
        Ascending, timezone-aware datetimes in the schedule's zone (`ZoneInfo`). Empty when the
        schedule is not `active` (Prefect schedules nothing then) or has no later occurrence
        (an rrule with COUNT or UNTIL).

    Raises:
        ValueError: `after` is naive or `count` is out of range.

    Example:
        ```python
        next_fire_times(ScheduleConfig(interval_seconds=3600),
                        datetime(2026, 1, 1, 10, 30, tzinfo=UTC), 2)
        # [2026-01-01 11:00+00:00, 2026-01-01 12:00+00:00]
        ```
    """
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError("`after` must be timezone-aware, e.g. datetime.now(UTC)")
    if not 1 <= count <= MAX_FIRE_TIMES:
        raise ValueError(f"count must be between 1 and {MAX_FIRE_TIMES}; got {count}")
    if not config.active:
        return []
    zone = ZoneInfo(config.effective_timezone)
    found: list[datetime] = []
    # The scheduler service iterates this generator itself (prefect.server.models.deployments).
    for moment in _server_schedule(config)._get_dates_generator(n=MAX_FIRE_TIMES, start=after):
        if moment > after:
            found.append(datetime.fromtimestamp(moment.timestamp(), zone))
            if len(found) == count:
                break
    return sorted(found)


def to_prefect_schedule(config: ScheduleConfig) -> PrefectSchedule:
    """The Prefect client schedule object for a schedule trigger, time zone included.

    Returns:
        `CronSchedule(cron, timezone)`, `IntervalSchedule(interval, anchor_date, timezone)`
        anchored at `INTERVAL_ANCHOR` in the zone, or `RRuleSchedule(rrule, timezone)`.
    """
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule, RRuleSchedule

    zone = config.effective_timezone
    if config.cron is not None:
        return CronSchedule(cron=config.cron, timezone=zone)
    if config.interval_seconds is not None:
        return IntervalSchedule(
            interval=timedelta(seconds=config.interval_seconds),
            anchor_date=INTERVAL_ANCHOR.replace(tzinfo=ZoneInfo(zone)),
            timezone=zone,
        )
    assert config.rrule is not None  # the model guarantees exactly one kind
    return RRuleSchedule(rrule=config.rrule, timezone=zone)


def to_deployment_schedule(
    config: ScheduleConfig, *, slug: str | None = None
) -> DeploymentScheduleCreate:
    """The schedule entry for `create_deployment(schedules=[...])`, with `active` carried over.

    Args:
        config: a validated schedule trigger.
        slug: a stable name for the schedule on the deployment (e.g. the trigger's `id`).
    """
    from prefect.client.schemas.actions import DeploymentScheduleCreate

    return DeploymentScheduleCreate(
        schedule=to_prefect_schedule(config), active=config.active, slug=slug
    )


class ScheduleTrigger(TriggerPiece):
    """Start runs on a cron, interval or rrule schedule (a schedule on the Prefect deployment)."""

    key = "schedule"
    strategy = TriggerStrategy.SCHEDULE
    display_name = "Schedule"
    description = (
        "Start runs on a schedule: exactly one of `cron` (with optional IANA `timezone`), "
        "`interval_seconds` or `rrule`; `active: false` pauses it."
    )
    category = "trigger"
    Config: ClassVar[type[ScheduleConfig]] = ScheduleConfig

    # What the API and the deployment sync call, reachable from the registered class too.
    next_fire_times = staticmethod(next_fire_times)
    to_prefect_schedule = staticmethod(to_prefect_schedule)
    to_deployment_schedule = staticmethod(to_deployment_schedule)


def check_timezone(name: str) -> str:
    """Return `name` if it is an IANA time zone; else raise `ValueError` suggesting close names."""
    zones = _iana_zones()
    if name in zones:
        return name
    by_case = {zone.lower(): zone for zone in zones}
    close = [by_case[name.lower()]] if name.lower() in by_case else []
    close = close or difflib.get_close_matches(name, sorted(zones), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else " (e.g. Europe/Istanbul, UTC)"
    raise ValueError(f"unknown time zone {name!r}: give an IANA name{hint}")


def check_cron(expression: str) -> str:
    """Return `expression`, stripped, if Prefect accepts it; else raise `ValueError` saying why."""
    text = expression.strip()
    fields = text.split()
    usage = (
        "expected five fields: minute hour day-of-month month day-of-week (e.g. '0 2 * * *'), "
        "or one of " + ", ".join(sorted(CRON_MACROS))
    )
    if text.startswith("@"):
        if text.lower() not in CRON_MACROS:
            raise ValueError(f"invalid cron expression {expression!r}: unknown macro; {usage}")
    elif len(fields) != 5:
        raise ValueError(
            f"invalid cron expression {expression!r}: {len(fields)} fields; {usage} "
            "(seconds and years are not supported)"
        )
    elif any(field.upper() in {"H", "R"} or field == "?" for field in fields):
        raise ValueError(f"invalid cron expression {expression!r}: H, R and ? are not supported")
    if not _cron_is_valid(text):
        raise ValueError(
            f"invalid cron expression {expression!r}: {_bad_cron_field(fields)}; {usage}"
        )
    return text


def _cron_is_valid(text: str) -> bool:
    """Prefect's `validate_cron_string`: its croniter parses it (H and R were refused above)."""
    return bool(_croniter().croniter.is_valid(text))


def _bad_cron_field(fields: list[str]) -> str:
    """Name the first field Prefect refuses on its own, for the error message."""
    for index, name in enumerate(_CRON_FIELDS):
        probe = ["*"] * 5
        probe[index] = fields[index]
        if not _cron_is_valid(" ".join(probe)):
            return f"the {name} field {fields[index]!r} is out of range or not understood"
    return "the fields are not understood together"


def check_rrule(rule: str) -> str:
    """Return `rule` if it parses as an RFC 5545 recurrence; else raise `ValueError` saying why."""
    rrules, _ = _dateutil()
    if not rule.strip():
        raise ValueError("invalid rrule: it is empty; e.g. FREQ=DAILY;BYHOUR=9")
    try:
        # What Prefect's `validate_rrule_string` does.
        rrules.rrulestr(rule, cache=True)
    except ValueError as exc:
        raise ValueError(
            f"invalid rrule {rule!r}: {exc}; e.g. FREQ=WEEKLY;BYDAY=MO;BYHOUR=9"
        ) from None
    return rule


def rrule_timezone(rule: str, timezone: str | None) -> str:
    """The zone an rrule is read in, refusing a `timezone` that contradicts its DTSTART.

    Prefect keeps a DTSTART's wall-clock digits and relabels them with the schedule's zone, so a
    DTSTART;TZID=Europe/Paris with `timezone: America/New_York` would silently fire in New York.
    """
    tzid = _DTSTART_TZID.search(rule)
    own = tzid.group(1) if tzid else "UTC" if _DTSTART_UTC.search(rule) else None
    if own is None:
        return timezone or "UTC"
    check_timezone(own)
    if timezone is not None and timezone != own:
        raise ValueError(
            f"the rrule's DTSTART is in {own} but `timezone` is {timezone}; "
            "give the zone in one place only"
        )
    return own


def _check_prefect_expands(config: ScheduleConfig) -> None:
    """Refuse a schedule that parses alone but that Prefect's scheduler could not use: a cron
    that matches no date, an rrule whose UNTIL, RDATE or EXDATE contradict its DTSTART."""
    now = datetime.now(UTC)
    try:
        if config.cron is not None:
            _cron_next(config.cron, config.effective_timezone, now)
        elif config.rrule is not None:
            _prefect_rrule(config.rrule, config.effective_timezone, now)
    except (ValueError, TypeError) as exc:
        if config.cron is not None:  # croniter: "failed to find next date"
            raise ValueError(
                f"invalid cron expression {config.cron!r}: it matches no date"
            ) from None
        raise ValueError(
            f"invalid rrule {config.rrule!r}: {exc} (write UNTIL, RDATE and EXDATE in the "
            "same form as DTSTART: local time without Z, or all in UTC with Z)"
        ) from None


def _cron_next(cron: str, timezone: str, start: datetime) -> datetime:
    """The next time as `prefect.server.schemas.schedules.CronSchedule._get_dates_generator`
    asks croniter for it (naive local time, one second before `start`, `day_or=True`)."""
    local = start.astimezone(ZoneInfo(timezone)) - timedelta(seconds=1)
    if local.microsecond:
        local += timedelta(seconds=1)
    naive = local.replace(tzinfo=None)
    found: datetime = _croniter().croniter(cron, naive, day_or=True).get_next(datetime)
    return found


PREFECT_RRULE_ANCHOR = datetime(2020, 1, 1)
"""The floating DTSTART Prefect writes into an rrule that has none."""


def _prefect_rrule(rule: str, timezone: str, now: datetime) -> Any:
    """The `dateutil` rule Prefect's scheduler would expand, built the way Prefect builds it.

    Mirrors, with `dateutil` alone, the deployment schedule's rrule normalisation
    (`prefect._internal.schemas.validators.normalize_rrule_string`: a floating DTSTART is
    added when there is none, a recent phase-equivalent one for SECONDLY and MINUTELY rules
    without COUNT) and `RRuleSchedule.to_rrule` (every date relabelled with the zone). Raises
    what those raise (`ValueError`: UNTIL, RDATE or EXDATE in another form than DTSTART).

    The rule is not expanded: once relabelled every date is in one zone, so expanding it
    cannot fail, and finding the next occurrence of a rule that has none (every date
    excluded) can take dateutil a minute, which a validator must not spend.
    """
    rrules, tz = _dateutil()
    normalised = _with_dtstart(rule, timezone, now)
    parsed = rrules.rrulestr(normalised, dtstart=date(2020, 1, 1), cache=True)
    zone = tz.gettz(timezone)

    def localised(one: Any) -> Any:
        changes = {"dtstart": one._dtstart.replace(tzinfo=zone)}
        if one._until:
            changes["until"] = one._until.replace(tzinfo=zone)
        return one.replace(**changes)

    if isinstance(parsed, rrules.rrule):
        return localised(parsed)
    parsed._rrule = [localised(one) for one in parsed._rrule]
    parsed._exrule = [localised(one) for one in parsed._exrule]
    parsed._rdate = [moment.replace(tzinfo=zone) for moment in parsed._rdate]
    parsed._exdate = [moment.replace(tzinfo=zone) for moment in parsed._exdate]
    return parsed


def _with_dtstart(rule: str, timezone: str, now: datetime) -> str:
    """`rule` with the floating DTSTART Prefect's normalisation gives a rule without one."""
    rrules, _ = _dateutil()
    if "DTSTART" in rule.upper():
        return rule
    anchor = PREFECT_RRULE_ANCHOR
    try:
        parsed = rrules.rrulestr(rule, dtstart=anchor, cache=False)
    except (ValueError, TypeError):
        return rule
    freq = getattr(parsed, "_freq", None)
    interval = getattr(parsed, "_interval", None)
    frequent = freq in (rrules.SECONDLY, rrules.MINUTELY)
    counted = getattr(parsed, "_count", None) is not None
    if isinstance(parsed, rrules.rrule) and frequent and interval and not counted:
        # Prefect anchors these near `now` (same phase), so that expanding them does not walk
        # every occurrence since 2020.
        period = (1 if freq == rrules.SECONDLY else 60) * interval
        local_now = now.astimezone(ZoneInfo(timezone)).replace(tzinfo=None)
        elapsed = (local_now - anchor).total_seconds()
        if elapsed > 0:
            anchor += timedelta(seconds=int(elapsed // period) * period)
    return f"DTSTART:{anchor.strftime('%Y%m%dT%H%M%S')}\n{rule}"


def _dateutil() -> tuple[Any, Any]:
    """`dateutil.rrule` and `dateutil.tz`, imported when first needed."""
    import dateutil.rrule
    import dateutil.tz

    return dateutil.rrule, dateutil.tz


def _croniter() -> ModuleType:
    """Prefect's vendored `croniter` module, without importing Prefect when it is not loaded.

    Prefect validates and expands cron schedules with `prefect._vendor.croniter`; importing it
    the usual way runs `prefect/__init__.py` (over a second). Its file imports only the
    standard library, `pytz` and `dateutil`, so it is loaded from that file under a private
    name. Where Prefect is already imported (a worker), or the file is not where it used to
    be, the regular import is used: the same code either way.
    """
    if "prefect" in sys.modules:
        return importlib.import_module(_PREFECT_CRONITER)
    return _vendored_croniter()


_PREFECT_CRONITER = "prefect._vendor.croniter.croniter"


@lru_cache(maxsize=1)
def _vendored_croniter() -> ModuleType:
    name = "_altlas_prefect_vendored_croniter"
    spec = importlib.util.find_spec("prefect")  # finds the package without importing it
    origin = Path(spec.origin).parent if spec is not None and spec.origin else None
    location = origin / "_vendor" / "croniter" / "croniter.py" if origin else None
    loaded = importlib.util.spec_from_file_location(name, location) if location else None
    if location is None or not location.is_file() or loaded is None or loaded.loader is None:
        return importlib.import_module(_PREFECT_CRONITER)
    module = importlib.util.module_from_spec(loaded)
    sys.modules[name] = module
    loaded.loader.exec_module(module)
    return module


def _server_schedule(config: ScheduleConfig) -> Any:
    """The schedule as Prefect's server holds it: the client object normalised, then re-read."""
    from prefect.server.schemas import schedules

    stored = to_deployment_schedule(config).schedule  # applies Prefect's rrule normalisation
    model = getattr(schedules, type(stored).__name__)
    return model.model_validate(stored.model_dump(mode="json"))


@lru_cache(maxsize=1)
def _iana_zones() -> frozenset[str]:
    return frozenset(available_timezones() - _NOT_IANA)
