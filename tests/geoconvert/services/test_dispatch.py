"""The dispatcher's rules, called directly against the database and the real broker: which
waiting conversions it sends, in what order, and that it never sends one twice. (What a
worker then does with them: tests/geoconvert/api/test_dispatch_order.py.)"""

import datetime

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone
from django_celery_results.models import TaskResult

from geoconvert.models import Conversion, Priority
from geoconvert.services.batches import batch_start
from geoconvert.services.conversions import conversion_start
from geoconvert.services.dispatch import conversion_send, conversions_release
from tagger.services import item_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def share(settings):
    settings.GEOCONVERT = {**settings.GEOCONVERT, "USER_MAX_QUEUED": 3}
    return 3


def _files(owner, n, *, parent=None, prefix="f"):
    return [
        item_create(owner=owner, name=f"{prefix}{i}.tif", parent=parent, file=ContentFile(b"x"))
        for i in range(n)
    ]


def _start(items, **kwargs):
    return [conversion_start(item=item, **kwargs)[0] for item in items]


def _sent(conversions) -> list[bool]:
    return [Conversion.objects.get(pk=c.pk).queued_at is not None for c in conversions]


def test_each_user_has_a_share_of_the_broker_and_the_rest_wait_in_order(user, share):
    conversions = _start(_files(user, 5))

    summary = conversions_release()

    assert summary.sent == [str(c.task_id) for c in conversions[:share]]
    assert _sent(conversions) == [True, True, True, False, False]
    assert {c.stage for c in Conversion.objects.all()} == {"Waiting in queue"}
    # Nothing more until one of them starts.
    assert conversions_release().sent == []
    Conversion.objects.filter(pk=conversions[0].pk).update(state="PROGRESS")
    assert conversions_release().sent == [str(conversions[3].task_id)]


def test_users_are_served_in_turn(user, other_user, share):
    mine = _start(_files(user, 5))
    theirs = _start(_files(other_user, 2, prefix="g"))

    sent = conversions_release().sent

    # One of each user's per round (the one who has waited longest first), so the second
    # user's are not behind the first's share.
    expected = []
    for turn in range(share):
        for queue in (mine, theirs):
            if turn < len(queue):
                expected.append(str(queue[turn].task_id))
    assert sent == expected


def test_a_user_s_lanes_go_first_and_high_has_a_share_of_its_own(user, share):
    low = _start(_files(user, 4, prefix="low"), priority=Priority.LOW)
    normal = _start(_files(user, 2, prefix="normal"), priority=Priority.NORMAL)
    high = _start(_files(user, 2, prefix="high"), priority=Priority.HIGH)

    sent = set(conversions_release().sent)

    # The high lane's own share, then the others' share filled normal first.
    assert sent == {str(c.task_id) for c in [*high, *normal, low[0]]}


def test_a_scheduled_conversion_waits_for_its_time(user, share):
    item = _files(user, 1)[0]
    run_at = timezone.now() + datetime.timedelta(minutes=5)
    conversion, _ = conversion_start(item=item, run_at=run_at)
    assert (conversion.state, conversion.stage) == ("PENDING", "Scheduled")

    assert conversions_release().sent == []
    assert conversions_release(now=run_at - datetime.timedelta(seconds=1)).sent == []
    assert conversions_release(now=run_at).sent == [str(conversion.task_id)]
    conversion.refresh_from_db()
    assert conversion.stage == "Waiting in queue" and conversion.queued_at is not None


def test_a_conversion_is_sent_once(user, share):
    conversion = _start(_files(user, 1))[0]

    assert conversion_send(conversion.pk, owner_id=user.pk) is True
    assert conversion_send(conversion.pk, owner_id=user.pk) is False
    assert conversions_release().sent == []


def test_a_batch_s_members_wait_in_the_database(user, share):
    folder = item_create(owner=user, name="maps")
    _files(user, 10, parent=folder)

    batch = batch_start(folder=folder)

    assert batch.total == 10
    assert Conversion.objects.filter(batch=batch, queued_at__isnull=True).count() == 10
    # A member becomes a Celery task (its result-backend mirror) when it is sent.
    assert not TaskResult.objects.exists()
    sent = conversions_release().sent
    assert len(sent) == share
    assert sorted(TaskResult.objects.values_list("task_id", "status")) == sorted(
        (task_id, "PENDING") for task_id in sent
    )
