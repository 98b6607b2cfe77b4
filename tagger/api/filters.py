import django_filters

from tagger.models import TreeItem


class ItemFilter(django_filters.FilterSet):
    parent = django_filters.UUIDFilter(field_name="parent_id")
    object_type = django_filters.ChoiceFilter(choices=TreeItem.ObjectType.choices)

    class Meta:
        model = TreeItem
        fields = ("parent", "object_type")
