import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from geoconvert.models import Conversion
from geoconvert.services.conversions import conversion_start
from tagger.services import item_create


@pytest.fixture
def make_conversion(user):
    """A conversion of a fresh file of `user`, put in `state` as a worker would have."""

    def make(state="PENDING", name="a.tif", item=None, **fields):
        item = item or item_create(owner=user, name=name, file=ContentFile(b"x" * 10))
        conversion, _ = conversion_start(item=item)
        now = timezone.now()
        if state != "PENDING":
            fields.setdefault("started_at", now)
            fields.setdefault("attempts", 1)
        if state in Conversion.FINISHED_STATES:
            fields.setdefault("finished_at", now)
        Conversion.objects.filter(pk=conversion.pk).update(state=state, **fields)
        conversion.refresh_from_db()
        return conversion

    return make
