"""The conversions admin, used as a logged-in staff user would: the list, the filters, the
detail page and the cancel/retry actions (which go through the services)."""

import pytest
from django.contrib.messages import get_messages
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone
from django_celery_results.models import TaskResult

from geoconvert.models import Conversion
from geoconvert.services.conversions import conversion_start
from tagger.services import item_create
from tests.factories import UserFactory
from tests.geoconvert.api.helpers import broker_dispatches

CHANGELIST = "/admin/geoconvert/conversion/"


@pytest.fixture
def staff_client(client, db):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def make_conversion(user):
    """A conversion of a fresh file of `user`, then put in `state` as a worker would."""

    def make(state="PENDING", name="a.tif", **fields):
        item = item_create(owner=user, name=name, file=ContentFile(b"x" * 10))
        conversion, _ = conversion_start(item=item)
        if state != "PENDING" or fields:
            now = timezone.now()
            if state != "PENDING":
                fields.setdefault("started_at", now - timezone.timedelta(seconds=90))
                fields.setdefault("attempts", 1)
            if state in Conversion.FINISHED_STATES:
                fields.setdefault("finished_at", now)
            Conversion.objects.filter(pk=conversion.pk).update(state=state, **fields)
            conversion.refresh_from_db()
        return conversion

    return make


def _act(client, action, conversions):
    response = client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [str(c.pk) for c in conversions]},
        follow=True,
    )
    assert response.status_code == 200
    return [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]


def test_list_shows_progress_bar_owner_state_and_duration(staff_client, make_conversion, user):
    running = make_conversion("PROGRESS", name="running.tif", stage="Loading file", progress=10)
    make_conversion("FAILURE", name="broken.tif", error="not a raster")

    page = staff_client.get(CHANGELIST).content.decode()

    assert "running.tif" in page and "broken.tif" in page
    assert user.username in page
    assert '<progress value="10" max="100"' in page
    assert "Loading file" in page
    assert "0:01:30" in page  # started 90 s before it finished
    assert str(running.task_id) in page


def test_filters_by_state_and_date(staff_client, make_conversion):
    make_conversion("PROGRESS", name="running.tif")
    make_conversion("FAILURE", name="broken.tif")

    failed = staff_client.get(CHANGELIST, {"state__exact": "FAILURE"}).content.decode()
    assert "broken.tif" in failed and "running.tif" not in failed

    today = timezone.now()
    dated = staff_client.get(
        CHANGELIST,
        {
            "created_at__year": today.year,
            "created_at__month": today.month,
            "created_at__day": today.day,
        },
    ).content.decode()
    assert "broken.tif" in dated and "running.tif" in dated
    assert (
        "0 conversions"
        in staff_client.get(CHANGELIST, {"created_at__year": today.year - 1}).content.decode()
    )


def test_detail_page_shows_error_traceback_and_links(staff_client, make_conversion):
    conversion = make_conversion(
        "FAILURE",
        error="The file is not a raster GDAL can read.",
        traceback="Traceback (most recent call last):\n  boom",
    )
    row = TaskResult.objects.get(task_id=str(conversion.task_id))

    page = staff_client.get(f"{CHANGELIST}{conversion.pk}/change/").content.decode()

    assert "The file is not a raster GDAL can read." in page
    assert "Traceback (most recent call last):" in page
    assert reverse("admin:tagger_treeitem_change", args=[conversion.item_id]) in page
    row_url = reverse("admin:django_celery_results_taskresult_change", args=[row.pk])
    assert row_url in page
    # The linked rows open.
    assert staff_client.get(row_url).status_code == 200
    assert (
        staff_client.get(
            reverse("admin:tagger_treeitem_change", args=[conversion.item_id])
        ).status_code
        == 200
    )


def test_detail_page_without_a_task_result_row(staff_client, make_conversion):
    conversion = make_conversion("PENDING")
    TaskResult.objects.all().delete()
    page = staff_client.get(f"{CHANGELIST}{conversion.pk}/change/")
    assert page.status_code == 200
    assert f"Task result {conversion.task_id}" not in page.content.decode()


def test_cancel_action_reports_counts_and_why_not(staff_client, make_conversion):
    queued = make_conversion("PENDING", name="queued.tif")
    running = make_conversion("PROGRESS", name="running.tif")
    done = make_conversion("SUCCESS", name="done.tif")

    notes = _act(staff_client, "cancel_selected", [queued, running, done])

    assert ("success", "2 conversion(s) cancelled.") in notes
    assert (
        "warning",
        f"1 not cancelled: {done.task_id}: Task already finished with state "
        "SUCCESS; it cannot be cancelled.",
    ) in notes
    queued.refresh_from_db(), running.refresh_from_db(), done.refresh_from_db()
    assert queued.state == "CANCELLED" and queued.cancel_requested
    # A running conversion is asked to stop; its worker ends it.
    assert running.state == "PROGRESS" and running.cancel_requested
    assert done.state == "SUCCESS" and not done.cancel_requested


def test_retry_action_starts_new_attempts_of_failed_and_cancelled_only(
    staff_client, make_conversion, django_capture_on_commit_callbacks
):
    failed = make_conversion("FAILURE", name="failed.tif")
    cancelled = make_conversion("CANCELLED", name="cancelled.tif")
    running = make_conversion("PROGRESS", name="running.tif")

    # The dispatch to the broker is captured, not run: this test is about the admin.
    with django_capture_on_commit_callbacks(execute=False) as dispatches:
        notes = _act(staff_client, "retry_selected", [failed, cancelled, running])

    assert ("success", "2 conversion(s) retried.") in notes
    assert (
        "warning",
        f"1 not retried: {running.task_id}: Only failed or cancelled "
        "conversions can be retried; this one is PROGRESS.",
    ) in notes
    assert len(broker_dispatches(dispatches)) == 2
    retries = Conversion.objects.filter(retry_of__in=[failed, cancelled])
    assert sorted(r.retry_of_id for r in retries) == sorted([failed.pk, cancelled.pk])
    assert {r.state for r in retries} == {"PENDING"}


def test_retry_refused_while_the_item_has_an_active_conversion(staff_client, make_conversion):
    failed = make_conversion("FAILURE")
    newer, _ = conversion_start(item=failed.item)

    notes = _act(staff_client, "retry_selected", [failed])

    assert ("info", "0 conversion(s) retried.") in notes
    assert (
        "warning",
        f"1 not retried: {failed.task_id}: A conversion of this item is already queued or running.",
    ) in notes
    assert Conversion.objects.filter(item=failed.item).count() == 2


def test_conversions_cannot_be_added_or_edited(staff_client, make_conversion):
    conversion = make_conversion("FAILURE")
    assert staff_client.get(f"{CHANGELIST}add/").status_code == 403
    staff_client.post(f"{CHANGELIST}{conversion.pk}/change/", {"state": "SUCCESS"})
    conversion.refresh_from_db()
    assert conversion.state == "FAILURE"


def test_celery_results_and_beat_stay_in_the_admin(staff_client):
    index = staff_client.get("/admin/").content.decode()
    for url in (
        "/admin/django_celery_results/taskresult/",
        "/admin/django_celery_beat/periodictask/",
        "/admin/geoconvert/conversion/",
        "/admin/tagger/treeitem/",
    ):
        assert url in index
        assert staff_client.get(url).status_code == 200
    # tagger's periodic tasks are there to edit.
    from django_celery_beat.models import PeriodicTask

    reaper = PeriodicTask.objects.get(name="Reap stale conversions")
    page = staff_client.get(f"/admin/django_celery_beat/periodictask/{reaper.pk}/change/")
    assert page.status_code == 200 and 'name="enabled"' in page.content.decode()


def test_admin_needs_a_staff_login(client, make_conversion):
    response = client.get(CHANGELIST)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
