import json

from django.utils import timezone

from tests.geoconvert.commands.helpers import run


def test_table_of_queued_running_and_failed_with_counts(make_conversion, settings):
    now = timezone.now()
    queued = make_conversion("PENDING", name="queued.tif")
    running = make_conversion(
        "PROGRESS",
        name="running.tif",
        stage="Creating georeferenced file",
        progress=40,
        heartbeat_at=now,
    )
    silent = make_conversion(
        "PROGRESS",
        name="silent.tif",
        progress=10,
        heartbeat_at=now - timezone.timedelta(minutes=10),
    )
    failed = make_conversion("FAILURE", name="bad.tif", error="The file is not a raster.")
    done = make_conversion("SUCCESS", name="done.tif")

    code, out, _ = run("conversion_status")

    assert code == 0
    assert out.splitlines()[0] == "PENDING 1  PROGRESS 2  SUCCESS 1  FAILURE 1  CANCELLED 0"
    header = out.splitlines()[2].split()
    assert header[:5] == ["TASK", "STATE", "STAGE", "PROGRESS", "TRIES"]
    lines = {line.split()[0]: line for line in out.splitlines()[3:]}
    assert set(lines) == {str(c.task_id) for c in (queued, running, silent, failed)}
    assert str(done.task_id) not in out
    assert "Creating georeferenced file" in lines[str(running.task_id)]
    assert "40%" in lines[str(running.task_id)]
    assert "PROGRESS SILENT" in lines[str(silent.task_id)]
    assert "SILENT" not in lines[str(running.task_id)]
    assert "The file is not a raster." in lines[str(failed.task_id)]


def test_state_filter_and_json(make_conversion):
    failed = make_conversion("FAILURE", name="bad.tif", error="nope")
    make_conversion("PENDING", name="queued.tif")

    code, out, _ = run("conversion_status", "--state", "FAILURE", "--json")

    assert code == 0
    data = json.loads(out)
    assert data["states"] == ["FAILURE"]
    assert data["counts"]["FAILURE"] == 1 and data["counts"]["PENDING"] == 1
    assert [c["task_id"] for c in data["conversions"]] == [str(failed.task_id)]
    assert data["conversions"][0]["error"] == "nope"
    assert data["conversions"][0]["item"] == "bad.tif"


def test_nothing_to_show(db):
    code, out, _ = run("conversion_status")
    assert code == 0
    assert "No conversions in PENDING, PROGRESS, FAILURE." in out


def test_unknown_state_is_a_usage_error(db):
    code, _, err = run("conversion_status", "--state", "DONE")
    assert code != 0 and "invalid choice" in err
