"""Signed links: a URL that grants one thing to whoever holds it, with no credentials.

A grant names one item, one scope (its original, its COG, or its map tiles) and the content
hash of the file it was made for; it is signed with SECRET_KEY (django.core.signing) and
carries its expiry. It stops working when it expires, when the file changes (a reconversion
gives the COG a new hash) and when the item is deleted.

A user grant names one user and one scope (their event stream, which a browser's EventSource
opens without headers); it stops working when it expires or the account is disabled.
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from django.core import signing
from django.utils import timezone

from tagger.errors import Forbidden

SALT = "tagger.links"
# Enough of the SHA-256 to tell two versions of a file apart; the signature does the rest.
HASH_CHARS = 16
MAX_SECONDS = 7 * 24 * 3600
DEFAULT_SECONDS = 3600


class Scope(StrEnum):
    ORIGINAL = "original"
    GEO_RASTER = "geo_raster"
    TILES = "tiles"
    EVENTS = "events"


@dataclass(frozen=True)
class Grant:
    item_id: uuid.UUID
    scope: Scope
    sha256: str
    expires_at: datetime


@dataclass(frozen=True)
class UserGrant:
    user_id: str
    scope: Scope
    expires_at: datetime


def user_grant_token(*, user_id, scope: Scope, expires_at: datetime) -> str:
    """The token of a signed link to one user's `scope` (URL-safe)."""
    payload = {"u": str(user_id), "s": str(scope), "x": int(expires_at.timestamp())}
    return signing.dumps(payload, salt=SALT, compress=True)


def grant_token(*, item_id: uuid.UUID, scope: Scope, sha256: str, expires_at: datetime) -> str:
    """The token of a signed link (URL-safe)."""
    payload = {
        "i": item_id.hex,
        "s": str(scope),
        "h": sha256[:HASH_CHARS],
        "x": int(expires_at.timestamp()),
    }
    return signing.dumps(payload, salt=SALT, compress=True)


def grant_expiry(seconds: int, *, now: datetime | None = None) -> datetime:
    """When a link made now for `seconds` expires (whole seconds, as the token keeps it)."""
    return ((now or timezone.now()) + timedelta(seconds=seconds)).replace(microsecond=0)


def grant_from_token(token: str, *, now: datetime | None = None) -> Grant | UserGrant:
    """The grant a token carries; Forbidden when it was altered or has expired."""
    try:
        payload = signing.loads(token, salt=SALT)
        expires_at = datetime.fromtimestamp(int(payload["x"]), tz=UTC)
        if "u" in payload:
            grant = UserGrant(
                user_id=str(payload["u"]), scope=Scope(payload["s"]), expires_at=expires_at
            )
        else:
            grant = Grant(
                item_id=uuid.UUID(hex=payload["i"]),
                scope=Scope(payload["s"]),
                sha256=str(payload["h"]),
                expires_at=expires_at,
            )
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise Forbidden(
            "This link is not valid: it was altered or is incomplete.", code="link_invalid"
        ) from None
    if grant.expires_at <= (now or timezone.now()):
        raise Forbidden(
            f"This link expired at {grant.expires_at.isoformat()}.", code="link_expired"
        )
    return grant


def grant_check(auth, *, item_id: uuid.UUID, scope: Scope, sha256: str) -> None:
    """When the request came through a signed link (`auth` is its Grant), that it grants
    this item's `scope`, and the file it was made for is still the current one."""
    if not isinstance(auth, Grant):
        return
    if auth.item_id != item_id or auth.scope != scope:
        raise Forbidden(
            "This link is not valid here: it was made for another file.", code="link_invalid"
        )
    if not sha256 or auth.sha256 != sha256[:HASH_CHARS]:
        raise Forbidden(
            "This link no longer works: the file has changed since the link was made.",
            code="link_stale",
        )
