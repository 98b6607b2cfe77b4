import django_filters

from geoconvert.models import Conversion


class TaskFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(choices=Conversion.State.choices)
    batch_id = django_filters.UUIDFilter(field_name="batch_id")

    class Meta:
        model = Conversion
        fields = ("state", "batch_id")
