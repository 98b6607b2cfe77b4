"""Status polling stays cheap: clients poll these endpoints every second or so.

Token authentication costs one query (the token joined to its user); each endpoint may then
use one more.
"""

import pytest

from geoconvert.models import Stage
from tests.factories import ConversionFactory, TreeItemFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def running(user):
    item = TreeItemFactory(owner=user, name="scene.tif")
    older = ConversionFactory(item=item, failed=True, error="The file is empty.")
    newer = ConversionFactory(item=item, running=True, stage=Stage.CREATING, progress=50)
    return item, older, newer


def test_task_status_takes_at_most_two_queries(api, running, django_assert_max_num_queries):
    _, _, conversion = running
    with django_assert_max_num_queries(2):
        response = api.get(f"/api/v1/tasks/{conversion.task_id}/status")
    assert response.status_code == 200
    assert response.json()["state"] == "PROGRESS"


def test_conversion_status_takes_at_most_two_queries(api, running, django_assert_max_num_queries):
    item, _, conversion = running
    with django_assert_max_num_queries(2):
        response = api.get(f"/api/v1/tree-items/{item.pk}/conversion-status")
    assert response.status_code == 200
    assert response.json()["task_id"] == str(conversion.task_id)


def test_finished_task_status_takes_at_most_two_queries(
    api, running, django_assert_max_num_queries
):
    _, conversion, _ = running
    with django_assert_max_num_queries(2):
        response = api.get(f"/api/v1/tasks/{conversion.task_id}/status")
    assert response.json()["error"] == "The file is empty."
