from django.apps import AppConfig


class GeoconvertConfig(AppConfig):
    name = "geoconvert"
    verbose_name = "Geo-raster conversions"
