from django.apps import AppConfig


class TaggerConfig(AppConfig):
    name = "tagger"
    verbose_name = "Items"
