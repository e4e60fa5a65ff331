"""Validating schedule triggers without Prefect's server code, with Prefect's verdicts.

A service validating its first definitions must not import `prefect.server` (over a second);
the schedule trigger checks cron expressions with Prefect's own vendored croniter, loaded from
its file, and rrules with dateutil as Prefect's scheduler builds them. The verdicts are compared
with Prefect's on a corpus.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from pieces.triggers.schedule import ScheduleConfig, _server_schedule

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
from interpreter import validate
base = json.load(open("definitions/examples/order-sync.json"))
found = [p.path for p in validate(base)]
for trigger in (
    {"id": "t", "type": "schedule", "rrule": "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9", "timezone": "UTC"},
    {"id": "t", "type": "schedule", "cron": "0 25 * * *"},
    {"id": "t", "type": "schedule", "cron": "0 0 31 2 *"},
    {"id": "t", "type": "schedule", "rrule": "FREQ=DAILY;UNTIL=20270101T000000Z"},
):
    found += [p.path for p in validate({**base, "triggers": [trigger]})]
print(json.dumps({"problems": found, "server": "prefect.server" in sys.modules}))
"""


def test_validating_schedule_triggers_does_not_import_the_prefect_server() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["problems"] == ["/triggers/0/cron", "/triggers/0", "/triggers/0"]
    assert report["server"] is False


CORPUS: list[dict[str, Any]] = [
    {"cron": "0 2 * * *"},
    {"cron": "0 2 * * *", "timezone": "Europe/Istanbul"},
    {"cron": "30 2 * * *", "timezone": "America/New_York"},
    {"cron": "*/15 9-17 * * MON-FRI"},
    {"cron": "@daily"},
    {"cron": "0 0 29 2 *"},
    {"cron": "0 0 L * *"},
    {"cron": "0 0 * * 5#2"},
    {"cron": "0 0 * * 7"},
    {"cron": "0 0 * * 8"},
    {"cron": "0 2 30 2 *"},
    {"cron": "0 0 31 2,4 *"},
    {"cron": "0 0 30 2 1"},
    {"rrule": "FREQ=DAILY"},
    {"rrule": "FREQ=DAILY;COUNT=3"},
    {"rrule": "FREQ=MINUTELY;INTERVAL=7"},
    {"rrule": "FREQ=SECONDLY;INTERVAL=30"},
    {"rrule": "FREQ=DAILY;UNTIL=20270101T000000"},
    {"rrule": "FREQ=DAILY;UNTIL=20270101T000000Z"},
    {"rrule": "DTSTART:20260101T090000Z\nRRULE:FREQ=DAILY;UNTIL=20270101T000000Z"},
    {"rrule": "DTSTART:20260101T090000\nRRULE:FREQ=DAILY;UNTIL=20270101T000000Z"},
    {"rrule": "DTSTART;TZID=Europe/Paris:20260101T090000\nRRULE:FREQ=DAILY"},
    {"rrule": "DTSTART;TZID=Europe/Paris:20260101T090000\nRRULE:FREQ=DAILY;UNTIL=20270101T000000Z"},
    {"rrule": "DTSTART;TZID=Europe/Paris:20260101T090000\nRRULE:FREQ=DAILY;UNTIL=20270101T000000"},
    {"rrule": "DTSTART:20260101T090000\nRRULE:FREQ=DAILY\nRDATE:20260301T100000Z"},
    {"rrule": "DTSTART:20260101T090000Z\nRRULE:FREQ=DAILY\nEXDATE:20260301T090000"},
    {"rrule": "RRULE:FREQ=WEEKLY;BYDAY=MO\nRRULE:FREQ=WEEKLY;BYDAY=FR"},
    {"rrule": "FREQ=WEEKLY;BYDAY=MO,WE,FR;BYHOUR=9", "timezone": "America/New_York"},
    {"rrule": "FREQ=FORTNIGHTLY"},
    {"rrule": "every monday"},
]


def prefect_accepts(fields: dict[str, Any]) -> bool:
    """Prefect's verdict: its validators, then its server schedule's first expansion."""
    from prefect._internal.schemas.validators import validate_cron_string, validate_rrule_string

    try:
        if "cron" in fields:
            validate_cron_string(fields["cron"])
        else:
            validate_rrule_string(fields["rrule"])
        unset = {"cron": None, "interval_seconds": None, "rrule": None, "timezone": None}
        config = ScheduleConfig.model_construct(**(unset | {"active": True} | fields))
        next(_server_schedule(config)._get_dates_generator(n=1, start=datetime.now(UTC)), None)
    except (ValueError, TypeError):
        return False
    return True


@pytest.mark.parametrize("fields", CORPUS, ids=[json.dumps(f) for f in CORPUS])
def test_schedule_verdicts_are_prefects(fields: dict[str, Any]) -> None:
    try:
        ScheduleConfig.model_validate(fields)
        ours = True
    except ValidationError:
        ours = False
    assert ours is prefect_accepts(fields)
