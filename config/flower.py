"""Flower must not run without a login where the settings say so (production)."""

from django.conf import settings


class FlowerWithoutLogin(SystemExit):
    pass


def require_login(*, basic_auth, auth) -> None:
    """Stop Flower's start when FLOWER_REQUIRE_AUTH is set and neither basic auth
    (--basic-auth / FLOWER_BASIC_AUTH) nor OAuth (--auth / FLOWER_AUTH) is configured.

    Called from flowerconfig.py, which Flower executes at start after reading its command
    line and FLOWER_* environment variables.
    """
    if settings.FLOWER_REQUIRE_AUTH and not (any(basic_auth or ()) or auth):
        raise FlowerWithoutLogin(
            "Refusing to start Flower without a login: set FLOWER_BASIC_AUTH=user:password "
            "(or configure OAuth with FLOWER_AUTH). Flower can revoke tasks and shows their "
            "arguments."
        )
