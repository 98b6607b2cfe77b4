"""Cancel and retry from the admin: staff with the change permission only."""

import pytest
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile

from geoconvert.models import Conversion
from geoconvert.services.conversions import conversion_start
from tagger.services import item_create
from tests.factories import UserFactory

CHANGELIST = "/admin/geoconvert/conversion/"


@pytest.fixture
def conversion(user, django_capture_on_commit_callbacks):
    item = item_create(owner=user, name="a.tif", file=ContentFile(b"x" * 10))
    with django_capture_on_commit_callbacks(execute=False):
        conversion, _ = conversion_start(item=item)
    return conversion


def _staff(*codenames):
    staff = UserFactory(is_staff=True)
    staff.user_permissions.set(
        Permission.objects.filter(content_type__app_label="geoconvert", codename__in=codenames)
    )
    return staff


def _cancel(client, conversion):
    return client.post(
        CHANGELIST, {"action": "cancel_selected", "_selected_action": [str(conversion.pk)]}
    )


def test_staff_with_change_permission_can_cancel(client, conversion):
    client.force_login(_staff("view_conversion", "change_conversion"))
    assert "cancel_selected" in client.get(CHANGELIST).content.decode()
    _cancel(client, conversion)
    assert Conversion.objects.get(pk=conversion.pk).state == Conversion.State.CANCELLED


def test_staff_who_may_only_view_cannot_cancel_or_retry(client, conversion):
    client.force_login(_staff("view_conversion"))
    page = client.get(CHANGELIST)
    assert page.status_code == 200
    assert "cancel_selected" not in page.content.decode()
    _cancel(client, conversion)
    assert Conversion.objects.get(pk=conversion.pk).state == Conversion.State.PENDING


def test_non_staff_never_reach_the_admin(client, user, conversion):
    client.force_login(user)
    response = _cancel(client, conversion)
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert Conversion.objects.get(pk=conversion.pk).state == Conversion.State.PENDING
