from rest_framework.authentication import BaseAuthentication
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.settings import api_settings

from tagger import links, selectors
from tagger.errors import Forbidden


class TokenView(ObtainAuthToken):
    """POST {username, password} -> {"token": ...}."""


class SignedLinkAuthentication(BaseAuthentication):
    """A signed link's `?token=`: the request acts as the item's owner, with the link's
    Grant as `request.auth`, which the view checks (tagger.links.grant_check). Only the
    routes a link can name use this class, so a link opens nothing else."""

    grant_type: type = links.Grant

    def authenticate(self, request):
        token = request.query_params.get("token")
        if not token:
            return None
        grant = links.grant_from_token(token)
        if not isinstance(grant, self.grant_type):
            raise Forbidden(
                "This link is not valid here: it was made for something else.",
                code="link_invalid",
            )
        owner = self.owner(grant)
        if not owner.is_active:
            raise Forbidden("This link no longer works: its owner's account is disabled.")
        return owner, grant

    def owner(self, grant):
        return selectors.item_owner(item_id=grant.item_id)

    def authenticate_header(self, request):
        # Without a token, these routes ask for the usual credentials (401, not 403).
        return 'Token realm="api"'


class UserLinkAuthentication(SignedLinkAuthentication):
    """A user grant's `?token=` (the event stream a browser's EventSource opens): the request
    acts as that user, with the UserGrant as `request.auth`."""

    grant_type = links.UserGrant

    def owner(self, grant):
        owner = selectors.user_get(user_id=grant.user_id)
        if owner is None:
            raise Forbidden("This link no longer works: its owner's account is gone.")
        return owner


# The routes a signed link may open: a link's token first, then the usual credentials.
LINK_AUTHENTICATION = (SignedLinkAuthentication, *api_settings.DEFAULT_AUTHENTICATION_CLASSES)
# The routes a user grant may open (event streams).
USER_LINK_AUTHENTICATION = (UserLinkAuthentication, *api_settings.DEFAULT_AUTHENTICATION_CLASSES)
