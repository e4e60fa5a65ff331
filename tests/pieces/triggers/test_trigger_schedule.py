"""The `schedule` trigger: its config errors, next fire times across DST, and Prefect schedules.

America/New_York changes clocks on 2026-03-08 (02:00 EST -> 03:00 EDT) and 2026-11-01
(02:00 EDT -> 01:00 EST); Europe/Istanbul stays at +03:00 all year, so the EU changes
(2026-03-29, 2026-10-25) leave its runs alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule, RRuleSchedule
from pydantic import ValidationError

from pieces.triggers.schedule import (
    ScheduleConfig,
    ScheduleTrigger,
    next_fire_times,
    to_deployment_schedule,
    to_prefect_schedule,
)

NEW_YORK = ZoneInfo("America/New_York")
ISTANBUL = ZoneInfo("Europe/Istanbul")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def utc_times(times: list[datetime]) -> list[str]:
    return [moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ") for moment in times]


def fires(after: datetime, count: int, **fields: object) -> list[datetime]:
    return next_fire_times(ScheduleConfig.model_validate(fields), after, count)


class TestConfig:
    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({}, "exactly one of `cron`, `interval_seconds` or `rrule`; got none"),
            ({"active": False}, "got none"),
            ({"cron": "0 2 * * *", "rrule": "FREQ=DAILY"}, "got `cron` and `rrule`"),
            ({"cron": "0 2 * * *", "interval_seconds": 60}, "got `cron` and `interval_seconds`"),
            (
                {"cron": "0 2 * * *", "timezone": "Europe/Istambul"},
                "unknown time zone 'Europe/Istambul': give an IANA name; did you mean "
                "Europe/Istanbul",
            ),
            ({"cron": "0 2 * * *", "timezone": "europe/istanbul"}, "did you mean Europe/Istanbul?"),
            ({"cron": "0 2 * * *", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
            ({"cron": "0 2 * * *", "timezone": "localtime"}, "unknown time zone 'localtime'"),
            ({"cron": "61 * * * *"}, "the minute field '61' is out of range"),
            ({"cron": "0 24 * * *"}, "the hour field '24' is out of range"),
            ({"cron": "0 2 * * FUNDAY"}, "the day-of-week field 'FUNDAY'"),
            ({"cron": "0 0 2 * * ?"}, "6 fields; expected five fields: minute hour"),
            ({"cron": "0 2 * *"}, "4 fields"),
            ({"cron": "@reboot"}, "unknown macro"),
            ({"cron": "H 2 * * *"}, "H, R and ? are not supported"),
            ({"cron": "0 2 30 2 *"}, "'0 2 30 2 *': it matches no date"),
            ({"rrule": "FREQ=FORTNIGHTLY"}, "invalid rrule 'FREQ=FORTNIGHTLY': invalid 'FREQ'"),
            ({"rrule": "every monday"}, "invalid rrule 'every monday'"),
            ({"rrule": " "}, "invalid rrule: it is empty"),
            (
                {"rrule": "FREQ=DAILY;UNTIL=20270101T000000Z"},
                "write UNTIL, RDATE and EXDATE in the same form as DTSTART",
            ),
            (
                {
                    "rrule": "DTSTART;TZID=Europe/Paris:20260101T090000\nRRULE:FREQ=DAILY",
                    "timezone": "America/New_York",
                },
                "DTSTART is in Europe/Paris but `timezone` is America/New_York",
            ),
            ({"interval_seconds": 0}, "greater than or equal to 1"),
            ({"interval_seconds": 60, "every": "minute"}, "Extra inputs are not permitted"),
        ],
    )
    def test_errors_say_what_to_fix(self, fields: dict[str, object], message: str) -> None:
        with pytest.raises(ValidationError) as caught:
            ScheduleConfig.model_validate(fields)
        assert message in str(caught.value)

    def test_valid_forms(self) -> None:
        assert ScheduleConfig(cron=" @daily ").cron == "@daily"
        assert ScheduleConfig(cron="*/15 9-17 * * MON-FRI").effective_timezone == "UTC"
        assert ScheduleConfig(cron="0 2 * * *", timezone="Europe/Istanbul").active is True
        assert ScheduleConfig(interval_seconds=60, active=False).active is False
        tzid = ScheduleConfig(rrule="DTSTART;TZID=Europe/Istanbul:20260101T090000\nFREQ=DAILY")
        assert tzid.effective_timezone == "Europe/Istanbul"

    def test_trigger_entry_common_fields_are_not_config(self) -> None:
        entry = {
            "id": "nightly",
            "type": "schedule",
            "cron": "0 2 * * *",
            "timezone": "Europe/Istanbul",
            "parameters": {"since": "{{ run.scheduled_at[:10] }}"},
        }
        config = ScheduleTrigger.parse_config(entry)
        assert config == ScheduleConfig(cron="0 2 * * *", timezone="Europe/Istanbul")

    def test_json_schema_names_the_spec_fields_and_requires_one_kind(self) -> None:
        schema = ScheduleTrigger.config_schema()
        assert set(schema["properties"]) == {
            "cron",
            "interval_seconds",
            "rrule",
            "timezone",
            "active",
        }
        assert schema["additionalProperties"] is False
        assert schema["oneOf"] == [
            {"required": ["cron"]},
            {"required": ["interval_seconds"]},
            {"required": ["rrule"]},
        ]
        assert schema["properties"]["interval_seconds"]["minimum"] == 1
        assert "default" not in schema["properties"]["cron"]
        assert schema["properties"]["active"]["default"] is True


class TestNextFireTimes:
    def test_cron_in_istanbul_ignores_the_eu_clock_changes(self) -> None:
        spring = fires(utc(2026, 3, 27, 12), 3, cron="0 2 * * *", timezone="Europe/Istanbul")
        autumn = fires(utc(2026, 10, 24, 12), 3, cron="0 2 * * *", timezone="Europe/Istanbul")
        assert spring[0] == datetime(2026, 3, 28, 2, tzinfo=ISTANBUL)
        assert utc_times(spring) == ["2026-03-27T23:00Z", "2026-03-28T23:00Z", "2026-03-29T23:00Z"]
        assert utc_times(autumn) == ["2026-10-24T23:00Z", "2026-10-25T23:00Z", "2026-10-26T23:00Z"]
        assert {moment.utcoffset() for moment in spring + autumn} == {timedelta(hours=3)}

    def test_cron_in_new_york_keeps_local_time_across_dst(self) -> None:
        times = fires(utc(2026, 3, 6, 12), 4, cron="0 9 * * *", timezone="America/New_York")
        assert [moment.hour for moment in times] == [9, 9, 9, 9]
        assert utc_times(times) == [
            "2026-03-06T14:00Z",
            "2026-03-07T14:00Z",
            "2026-03-08T13:00Z",
            "2026-03-09T13:00Z",
        ]

    def test_cron_time_skipped_by_spring_forward_fires_an_hour_early_as_in_prefect(self) -> None:
        # 02:00 does not exist in New York on 2026-03-08; Prefect 3.8.8 schedules 01:00 EST.
        times = fires(utc(2026, 3, 6, 12), 4, cron="0 2 * * *", timezone="America/New_York")
        assert [moment.isoformat() for moment in times] == [
            "2026-03-07T02:00:00-05:00",
            "2026-03-08T01:00:00-05:00",
            "2026-03-09T02:00:00-04:00",
            "2026-03-10T02:00:00-04:00",
        ]

    def test_cron_time_repeated_by_fall_back_fires_once(self) -> None:
        daily = fires(utc(2026, 10, 30, 12), 3, cron="30 1 * * *", timezone="America/New_York")
        assert utc_times(daily) == ["2026-10-31T05:30Z", "2026-11-01T05:30Z", "2026-11-02T06:30Z"]
        hourly = fires(utc(2026, 11, 1, 3, 30), 4, cron="0 * * * *", timezone="America/New_York")
        # 01:00 EDT, then 02:00 EST two hours later: the second 01:00 (EST) is not a new hour.
        assert [moment.isoformat() for moment in hourly] == [
            "2026-11-01T00:00:00-04:00",
            "2026-11-01T01:00:00-04:00",
            "2026-11-01T02:00:00-05:00",
            "2026-11-01T03:00:00-05:00",
        ]

    def test_interval_counts_from_local_midnight_2020(self) -> None:
        hourly = fires(utc(2026, 1, 1, 10, 30), 2, interval_seconds=3600)
        assert hourly == [utc(2026, 1, 1, 11), utc(2026, 1, 1, 12)]
        odd = fires(utc(2026, 1, 1), 3, interval_seconds=90)
        assert [moment.strftime("%H:%M:%S") for moment in odd] == [
            "00:01:30",
            "00:03:00",
            "00:04:30",
        ]

    def test_interval_under_a_day_is_elapsed_time_a_day_or_more_is_wall_clock(self) -> None:
        hourly = fires(
            utc(2026, 3, 8, 5, 30), 3, interval_seconds=3600, timezone="America/New_York"
        )
        assert utc_times(hourly) == ["2026-03-08T06:00Z", "2026-03-08T07:00Z", "2026-03-08T08:00Z"]
        daily = fires(utc(2026, 3, 6, 12), 4, interval_seconds=86400, timezone="America/New_York")
        assert [moment.strftime("%d %H:%M%z") for moment in daily] == [
            "07 00:00-0500",
            "08 00:00-0500",
            "09 00:00-0400",
            "10 00:00-0400",
        ]

    def test_rrule_in_a_zone_and_with_its_own_tzid(self) -> None:
        weekly = fires(
            utc(2026, 3, 1),
            3,
            rrule="FREQ=WEEKLY;BYDAY=MO;BYHOUR=9",
            timezone="America/New_York",
        )
        assert [moment.isoformat() for moment in weekly] == [
            "2026-03-02T09:00:00-05:00",
            "2026-03-09T09:00:00-04:00",
            "2026-03-16T09:00:00-04:00",
        ]
        workdays = fires(
            utc(2026, 3, 27),
            3,
            rrule="DTSTART;TZID=Europe/Istanbul:20260101T083000\nRRULE:FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR",
        )
        assert workdays == [
            datetime(2026, 3, 27, 8, 30, tzinfo=ISTANBUL),
            datetime(2026, 3, 30, 8, 30, tzinfo=ISTANBUL),
            datetime(2026, 3, 31, 8, 30, tzinfo=ISTANBUL),
        ]

    def test_rrule_that_runs_out(self) -> None:
        rule = "DTSTART:20260101T090000\nRRULE:FREQ=DAILY;COUNT=3"
        assert len(fires(utc(2026, 1, 1), 5, rrule=rule)) == 3
        assert fires(utc(2026, 2, 1), 5, rrule=rule) == []

    def test_strictly_after_and_timezone_aware_results(self) -> None:
        at_fire_time = datetime(2026, 3, 28, 2, tzinfo=ISTANBUL)
        times = fires(at_fire_time, 1, cron="0 2 * * *", timezone="Europe/Istanbul")
        assert times == [datetime(2026, 3, 29, 2, tzinfo=ISTANBUL)]
        assert isinstance(times[0].tzinfo, ZoneInfo)
        assert type(times[0]) is datetime  # not Prefect's pendulum subclass

    def test_inactive_schedule_fires_nothing(self) -> None:
        assert fires(utc(2026, 1, 1), 3, cron="0 2 * * *", active=False) == []

    def test_bad_arguments(self) -> None:
        config = ScheduleConfig(cron="0 2 * * *")
        with pytest.raises(ValueError, match="timezone-aware"):
            next_fire_times(config, datetime(2026, 1, 1), 1)
        with pytest.raises(ValueError, match="between 1 and 1000"):
            next_fire_times(config, utc(2026, 1, 1), 0)
        assert len(next_fire_times(config, utc(2026, 1, 1), 1000)) == 1000


class TestPrefectSchedules:
    def test_cron(self) -> None:
        schedule = to_prefect_schedule(ScheduleConfig(cron="0 2 * * *", timezone="Europe/Istanbul"))
        assert isinstance(schedule, CronSchedule)
        assert (schedule.cron, schedule.timezone, schedule.day_or) == (
            "0 2 * * *",
            "Europe/Istanbul",
            True,
        )
        assert to_prefect_schedule(ScheduleConfig(cron="@daily")).timezone == "UTC"

    def test_interval(self) -> None:
        schedule = to_prefect_schedule(
            ScheduleConfig(interval_seconds=900, timezone="America/New_York")
        )
        assert isinstance(schedule, IntervalSchedule)
        assert schedule.interval == timedelta(minutes=15)
        assert schedule.timezone == "America/New_York"
        assert schedule.anchor_date == datetime(2020, 1, 1, tzinfo=NEW_YORK)

    def test_rrule(self) -> None:
        rule = "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9"
        schedule = to_prefect_schedule(ScheduleConfig(rrule=rule, timezone="America/New_York"))
        assert isinstance(schedule, RRuleSchedule)
        assert (schedule.rrule, schedule.timezone) == (rule, "America/New_York")
        tzid = "DTSTART;TZID=Europe/Istanbul:20260101T090000\nRRULE:FREQ=DAILY"
        assert to_prefect_schedule(ScheduleConfig(rrule=tzid)).timezone == "Europe/Istanbul"

    def test_deployment_schedule_carries_active_and_slug(self) -> None:
        entry = to_deployment_schedule(
            ScheduleConfig(cron="0 2 * * *", active=False), slug="nightly"
        )
        assert isinstance(entry, DeploymentScheduleCreate)
        assert (entry.active, entry.slug) == (False, "nightly")
        assert isinstance(entry.schedule, CronSchedule)
        assert ScheduleTrigger.to_deployment_schedule(ScheduleConfig(cron="@hourly")).active


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize(
    ("fields", "start", "end"),
    [
        ({"cron": "0 2 * * *", "timezone": "America/New_York"}, utc(2026, 3, 6), utc(2026, 3, 11)),
        (
            {"cron": "30 1 * * *", "timezone": "America/New_York"},
            utc(2026, 10, 30),
            utc(2026, 11, 3),
        ),
        ({"cron": "0 2 * * *", "timezone": "Europe/Istanbul"}, utc(2026, 3, 27), utc(2026, 3, 31)),
        (
            {"interval_seconds": 86400, "timezone": "America/New_York"},
            utc(2026, 3, 6),
            utc(2026, 3, 11),
        ),
        (
            {"rrule": "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9", "timezone": "America/New_York"},
            utc(2026, 3, 1),
            utc(2026, 3, 20),
        ),
    ],
)
async def test_prefect_server_schedules_exactly_these_times(
    fields: dict[str, object], start: datetime, end: datetime
) -> None:
    """A real Prefect server, backfilling the deployment schedule, creates runs at our times."""
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    config = ScheduleConfig.model_validate(fields)
    async with get_client() as client:
        flow_id = await client.create_flow_from_name("trigger-schedule-check")
        deployment_id = await client.create_deployment(
            flow_id=flow_id,
            name=f"check-{abs(hash(str(fields)))}",
            schedules=[to_deployment_schedule(config)],
        )
        response = await client._client.post(
            f"/deployments/{deployment_id}/schedule",
            json={
                "start_time": start.isoformat(),
                "end_time": end.isoformat(),
                "min_time": (end - start).total_seconds(),
                "max_runs": 100,
            },
        )
        response.raise_for_status()
        runs = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )
        await client.delete_deployment(deployment_id)
    # The server's own scheduler service may also have created runs from today on: keep the window.
    scheduled = sorted(
        moment
        for run in runs
        if (moment := run.expected_start_time) is not None and start <= moment <= end
    )
    ours = [
        moment
        for moment in next_fire_times(config, start - timedelta(microseconds=1), 100)
        if moment <= end
    ]
    assert len(ours) >= 3
    assert [moment.timestamp() for moment in scheduled] == [moment.timestamp() for moment in ours]
