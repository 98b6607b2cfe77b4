from django.conf import settings
from rest_framework.throttling import UserRateThrottle


class ConvertRateThrottle(UserRateThrottle):
    """Conversions a user may request per period: GEOCONVERT_CONVERT_RATE, e.g. "60/min".

    The rate is read from settings on each request. DRF's own lookup copies
    DEFAULT_THROTTLE_RATES into a class attribute at import, so a changed setting would
    otherwise be ignored until restart.
    """

    scope = "convert"

    def get_rate(self):
        return settings.GEOCONVERT_CONVERT_RATE
