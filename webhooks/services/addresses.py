"""Which URLs a webhook may be sent to: http or https, and (unless
TAGGER_WEBHOOK_ALLOW_PRIVATE_URLS) a host whose every address is public. Checked at
registration and again at each delivery, against the addresses the host resolves to then,
and the delivery connects to the address it checked (no second lookup to rebind)."""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from tagger.errors import ApplicationError

SCHEMES = ("http", "https")


class BlockedUrl(ApplicationError):
    default_code = "webhook_url_refused"


@dataclass(frozen=True)
class Target:
    """Where to connect for a URL: `address` (None: let the client resolve `host`)."""

    scheme: str
    host: str
    port: int
    address: str | None


def _refusal(address) -> str | None:
    """Why `address` may not receive webhooks, or None."""
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    for kind in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    if not ip.is_global:
        return "non-public"
    return None


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def webhook_url_target(url: str) -> Target:
    """Where a delivery to `url` connects; raises BlockedUrl when `url` may not be used."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise BlockedUrl(f"The URL is not valid: {exc}.") from None
    if parts.scheme not in SCHEMES:
        raise BlockedUrl("Only http and https URLs can receive webhooks.")
    host = parts.hostname
    if not host:
        raise BlockedUrl("The URL has no host.")
    if settings.TAGGER_WEBHOOK_ALLOW_PRIVATE_URLS:
        return Target(parts.scheme, host, port, None)
    try:
        addresses = _resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise BlockedUrl(f"The URL's host {host} could not be resolved ({exc}).") from None
    for address in addresses:
        reason = _refusal(address)
        if reason:
            raise BlockedUrl(
                f"The URL's host {host} resolves to {address}, a {reason} address: webhooks "
                "are only sent to public addresses (TAGGER_WEBHOOK_ALLOW_PRIVATE_URLS allows "
                "others)."
            )
    if not addresses:
        raise BlockedUrl(f"The URL's host {host} resolves to no address.")
    return Target(parts.scheme, host, port, addresses[0])
