from django.conf import settings
from rest_framework.throttling import UserRateThrottle


class ConvertRateThrottle(UserRateThrottle):
    """Conversions a user may start per period: GEOCONVERT_CONVERT_RATE, e.g. "60/min".

    Only calls that start new work count (`count_started`, called by the view once a
    conversion was created): a repeat that returns the running conversion's task id, a 409
    and a validation error cost nothing. Over the limit every call gets 429 with Retry-After.

    The rate is read from settings on each request. DRF's own lookup copies
    DEFAULT_THROTTLE_RATES into a class attribute at import, so a changed setting would
    otherwise be ignored until restart.
    """

    scope = "convert"

    def get_rate(self):
        return settings.GEOCONVERT_CONVERT_RATE

    def throttle_success(self):
        # Checked here, counted in count_started: this call may start nothing.
        return True

    @classmethod
    def count_started(cls, request, view) -> None:
        """Count one started conversion against the caller's rate."""
        throttle = cls()
        key = throttle.get_cache_key(request, view)
        if key is None:
            return
        now = throttle.timer()
        history = [t for t in throttle.cache.get(key, []) if t > now - throttle.duration]
        throttle.cache.set(key, [now, *history], throttle.duration)
