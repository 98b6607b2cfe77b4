import django_filters

from geoconvert.models import Conversion


class TaskFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(choices=Conversion.State.choices)

    class Meta:
        model = Conversion
        fields = ("state",)
