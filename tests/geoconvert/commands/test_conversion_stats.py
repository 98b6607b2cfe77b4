import json
from datetime import timedelta

from django.utils import timezone

from tests.geoconvert.commands.helpers import run


def _ran(make_conversion, state, *, seconds, waited=1.0, ago=timedelta(hours=1), **fields):
    created = timezone.now() - ago
    started = created + timedelta(seconds=waited)
    return make_conversion(
        state, created_at=created, started_at=started,
        finished_at=started + timedelta(seconds=seconds), **fields,
    )  # fmt: skip


def test_counts_percentiles_slowest_and_failure_reasons(make_conversion):
    for n in range(1, 21):
        _ran(make_conversion, "SUCCESS", seconds=n, waited=n / 10, name=f"ok-{n}.tif")
    slowest = _ran(make_conversion, "SUCCESS", seconds=3 * 3600, name="huge.tif")
    for error in ["The file is not a raster."] * 3 + ["The raster is too large."]:
        _ran(make_conversion, "FAILURE", seconds=0.5, error=error)
    make_conversion("PENDING", name="waiting.tif")
    old = _ran(make_conversion, "FAILURE", seconds=1, ago=timedelta(days=3), error="Old.")

    code, out, _ = run("conversion_stats", "--since", "24h")

    assert code == 0
    lines = out.splitlines()
    assert lines[0].endswith("(24h): 26")
    assert lines[1] == "PENDING 1  PROGRESS 0  SUCCESS 21  FAILURE 4  CANCELLED 0"
    # 25 runs: 4 of 0.5 s, 1..20 s, and 3 h; the median is the 13th, 9 s.
    assert lines[3].split()[:5] == ["run", "duration", "p50", "9.0s", "p95"]
    assert "(25 finished)" in lines[3]
    assert "(25 started)" in lines[4]
    slow = lines[lines.index("Slowest:") + 2]
    assert slow.split()[:3] == [str(slowest.task_id), "SUCCESS", "3h"]
    assert "huge.tif" in slow
    reasons = lines[lines.index("Most frequent failure reasons:") + 1 :]
    assert reasons[1].split(maxsplit=1) == ["3", "The file is not a raster."]
    assert reasons[2].split(maxsplit=1) == ["1", "The raster is too large."]
    assert str(old.task_id) not in out and "Old." not in out


def test_json(make_conversion):
    _ran(make_conversion, "SUCCESS", seconds=4, waited=2)
    _ran(make_conversion, "FAILURE", seconds=1, waited=0.5, error="The file is empty.")
    _ran(make_conversion, "FAILURE", seconds=1, ago=timedelta(days=3), error="Old.")

    code, out, _ = run("conversion_stats", "--since", "7d", "--json", "--limit", "1")

    assert code == 0
    body = json.loads(out)
    assert body["period"] == "7d"
    assert body["total"] == 3
    assert body["counts"]["FAILURE"] == 2
    assert body["duration_seconds"] == {"count": 3, "p50": 1.0, "p95": 4.0}
    assert body["queue_wait_seconds"]["p95"] == 2.0
    assert len(body["slowest"]) == 1 and body["slowest"][0]["seconds"] == 4.0
    assert body["failure_reasons"] == [{"reason": "Old.", "count": 1}]


def test_nothing_in_the_period(db):
    code, out, _ = run("conversion_stats", "--since", "30m")
    assert code == 0
    assert "p50 -" in out and "Slowest" not in out


def test_a_bad_period_is_a_usage_error(db):
    code, _, err = run("conversion_stats", "--since", "yesterday")
    assert code == 2
    assert "Not a duration" in err
