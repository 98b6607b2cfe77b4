import django_filters

from tagger.models import TreeItem


class ItemFilter(django_filters.FilterSet):
    parent = django_filters.UUIDFilter(field_name="parent_id")
    # `?top_level=true`: the items at the top of the tree (no parent), as a folder view needs.
    top_level = django_filters.BooleanFilter(field_name="parent", lookup_expr="isnull")
    object_type = django_filters.ChoiceFilter(choices=TreeItem.ObjectType.choices)

    class Meta:
        model = TreeItem
        fields = ("parent", "top_level", "object_type")
