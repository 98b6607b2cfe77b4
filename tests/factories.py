"""factory_boy factories for the models the tests build: users, items, COGs, conversions.

A factory writes rows directly: nothing is dispatched to the broker and nothing is mirrored
into the result backend. Tests that need those go through the services.
"""

import hashlib
import uuid

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from geoconvert.models import Conversion, Stage
from tagger.models import GeoRaster, TreeItem
from tagger.storage import item_file_path

PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class TreeItemFactory(factory.django.DjangoModelFactory):
    """A file (its upload stored where the API stores it); `folder=True` for a folder."""

    class Meta:
        model = TreeItem

    class Params:
        content = b"x"
        folder = factory.Trait(
            object_type=TreeItem.ObjectType.FOLDER, file=None, size=None, file_sha256=""
        )

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"file-{n}.tif")
    object_type = TreeItem.ObjectType.FILE
    file = factory.django.FileField(filename="original", data=factory.SelfAttribute("..content"))
    size = factory.LazyAttribute(lambda item: len(item.content))
    file_sha256 = factory.LazyAttribute(lambda item: hashlib.sha256(item.content).hexdigest())


class GeoRasterFactory(factory.django.DjangoModelFactory):
    """The COG row of a converted item (the item is made a geo-raster file too)."""

    class Meta:
        model = GeoRaster

    item = factory.SubFactory(TreeItemFactory, object_type=TreeItem.ObjectType.GEO_RASTER_FILE)
    file = factory.LazyAttribute(lambda g: item_file_path(g.item, "geo_raster.tif"))
    crs = "EPSG:32633"
    bounds = [500000, 4000000, 501000, 4001000]
    bounds_wgs84 = [15.0, 36.1, 15.01, 36.11]
    width = 1000
    height = 1000
    count = 1
    dtypes = ["float32"]
    nodata = -9999
    resolution = [1.0, 1.0]
    overviews = [2, 4]
    compression = "deflate"
    size_bytes = 123456
    sha256 = factory.LazyFunction(lambda: uuid.uuid4().hex * 2)
    stored_at = factory.LazyFunction(timezone.now)


class ConversionFactory(factory.django.DjangoModelFactory):
    """A conversion row; traits put it where a worker would have left it."""

    class Meta:
        model = Conversion

    class Params:
        running = factory.Trait(
            state=Conversion.State.PROGRESS,
            stage=Stage.CREATING,
            progress=40,
            claim=factory.LazyFunction(uuid.uuid4),
            worker="worker@host",
            started_at=factory.LazyFunction(timezone.now),
            heartbeat_at=factory.LazyFunction(timezone.now),
            attempts=1,
        )
        failed = factory.Trait(
            state=Conversion.State.FAILURE,
            error="The file is empty.",
            attempts=1,
            started_at=factory.LazyFunction(timezone.now),
            finished_at=factory.LazyFunction(timezone.now),
        )

    item = factory.SubFactory(TreeItemFactory)
    owner = factory.SelfAttribute("item.owner")
