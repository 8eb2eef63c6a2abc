"""One guard for every URL an operator sets and Doorstep connects to (SSRF).

The logistics webhook, the agent webhook, Chatwoot and the LLM base URL are
typed by whoever configures Doorstep; a wrong or hostile value must not make
the bot POST customer data to the cloud metadata service or to a database on
the private network. So each such URL must be http(s) with a host, and every
address its host resolves to must be public. An IPv6 address that carries an
IPv4 one (IPv4-mapped, IPv4-compatible, 6to4, NAT64, Teredo) is judged by the
IPv4 address inside it as well, because that is where the packets end up.

`DOORSTEP_ALLOW_PRIVATE_URLS=true` (development, the test suite's loopback
fakes, an on-premises Chatwoot) lets loopback and private-network addresses
through; link-local, metadata, multicast, reserved and unspecified addresses
are refused even then.

`GuardedTransport` applies the guard to every request an httpx client makes
and connects to the address it vetted (the TLS name stays the host name), so
neither a redirect nor a second DNS answer can swap in an internal address.

This module never logs a URL: operator URLs can carry tokens in their query.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, urlsplit

import httpx

from intents.errors import DoorstepError

if TYPE_CHECKING:
    from bot.core.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata endpoints that are not link-local (AWS IPv6, Alibaba, Oracle's legacy one).
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "192.0.0.192",
))
# IETF protocol assignments (192.0.0.0/24): never a webhook receiver, and some Python versions call parts global.
IETF_PROTOCOL_ASSIGNMENTS = ipaddress.ip_network("192.0.0.0/24")
# NAT64 prefixes whose last 32 bits are the IPv4 destination (RFC 6052 well-known, RFC 8215 local use).
NAT64_PREFIXES = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
# Private networks `allow_private` opens (besides loopback); link-local stays closed.
PRIVATE_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7",
))


class UnsafeURL(DoorstepError, ValueError):
    """A configured URL Doorstep must not connect to; the message names the setting, never the URL."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting} {reason}")
        self.setting = setting
        self.reason = reason


class HostNotResolved(DoorstepError, OSError):
    """The URL's host has no address right now (may be transient: DNS down, a service not started yet)."""

    def __init__(self, setting: str) -> None:
        super().__init__(f"{setting}: the host name did not resolve")
        self.setting = setting


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address delivers to (mapped, compatible, 6to4, NAT64, Teredo)."""
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)  # (server, client): the client is the real destination
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    nat64 = any(address in prefix for prefix in NAT64_PREFIXES)
    compatible = address in IPV4_COMPATIBLE and int(address) > 1  # ::a.b.c.d (deprecated), not :: or ::1
    if nat64 or compatible:
        found.append(low32)
    return found


def _ipv4_problem(address: ipaddress.IPv4Address, *, allow_private: bool) -> str | None:
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified or address.is_multicast or address.is_reserved or address in IETF_PROTOCOL_ASSIGNMENTS:
        return "a reserved, multicast or unspecified address"
    if address.is_loopback or any(address in net for net in PRIVATE_NETWORKS):
        return None if allow_private else "a loopback or private-network address"
    if not address.is_global:
        return "a non-public address"
    return None


def address_problem(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why Doorstep must not connect to `address`, or None when it may."""
    if isinstance(address, ipaddress.IPv4Address):
        return _ipv4_problem(address, allow_private=allow_private)
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for inner in embedded_ipv4(address):
        problem = _ipv4_problem(inner, allow_private=allow_private)
        if problem:
            return problem + " (inside an IPv6 address)"
    if address.is_link_local or address.is_site_local:
        return "a link-local address"
    if address.is_unspecified or address.is_multicast:
        return "a multicast or unspecified address"
    if address.is_loopback or any(address in net for net in PRIVATE_NETWORKS):
        return None if allow_private else "a loopback or private-network address"
    if embedded_ipv4(address):
        return None  # a translation prefix to a public IPv4 address (checked above)
    if address.is_reserved or not address.is_global:
        return "a reserved or non-public address"
    return None


def web_url_parts(url: str, setting: str) -> SplitResult:
    """The parts of an http(s) URL with a host, or UnsafeURL."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise UnsafeURL(setting, "is not a valid URL") from None
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        raise UnsafeURL(setting, "must be an http:// or https:// URL with a host")
    return parts


def resolve(host: str, port: int, setting: str) -> list[IPAddress]:
    """Every address `host` resolves to (a literal address is itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise HostNotResolved(setting) from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise HostNotResolved(setting)
    return list(dict.fromkeys(addresses))


def vet_url(url: str, *, setting: str, allow_private: bool) -> str:
    """The address to connect to for `url`, after checking its scheme and every address its host has.

    Raises UnsafeURL (a configuration mistake: retrying will not help) or
    HostNotResolved (perhaps transient).
    """
    parts = web_url_parts(url, setting)
    host = parts.hostname or ""
    addresses = resolve(host, parts.port or (443 if parts.scheme.lower() == "https" else 80), setting)
    for address in addresses:
        problem = address_problem(address, allow_private=allow_private)
        if problem:
            raise UnsafeURL(setting, f"points at {problem}; Doorstep refuses to connect there"
                            + ("" if allow_private or "private" not in problem
                               else " (DOORSTEP_ALLOW_PRIVATE_URLS=true allows private networks)"))
    return str(addresses[0])


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that vets every request's URL and connects to the vetted address."""

    def __init__(self, *, setting: str, allow_private: bool, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.setting = setting
        self.allow_private = allow_private
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        address = await asyncio.to_thread(vet_url, str(request.url), setting=self.setting,
                                          allow_private=self.allow_private)
        if request.url.scheme == "https":
            # Certificate check and SNI against the host name, not the address.
            request.extensions = {**request.extensions, "sni_hostname": request.url.host}
        # The Host header was set from the original URL when the request was built.
        request.url = request.url.copy_with(host=address)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass(frozen=True)
class URLCheck:
    """One configured URL's verdict, for `doorstep config check` and the start-up check."""

    setting: str
    ok: bool
    problem: str = ""
    fatal: bool = False  # True: the URL can never work (scheme, refused address); False: DNS, maybe later


def operator_urls(settings: Settings) -> list[tuple[str, str, bool]]:
    """(setting name, URL, private addresses allowed) for each operator URL that is set."""
    private = settings.allow_private_urls
    urls = [
        ("LOGISTICS_WEBHOOK_URL", settings.logistics_webhook_url, private or settings.logistics_allow_private),
        ("DOORSTEP_AGENT_WEBHOOK_URL", settings.agent_webhook_url, private),
        ("CHATWOOT_URL", settings.chatwoot_url, private),
        ("OPENAI_BASE_URL", settings.openai_base_url, private),
    ]
    return [(name, url, allowed) for name, url, allowed in urls if url.strip()]


def check_operator_urls(settings: Settings) -> list[URLCheck]:
    """Vet every operator URL that is set (resolving host names)."""
    results = []
    for setting, url, allowed in operator_urls(settings):
        try:
            vet_url(url, setting=setting, allow_private=allowed)
        except UnsafeURL as exc:
            results.append(URLCheck(setting, False, exc.reason, fatal=True))
        except HostNotResolved:
            results.append(URLCheck(setting, False, "the host name does not resolve (yet)"))
        else:
            results.append(URLCheck(setting, True))
    return results


def redacted(url: str) -> str:
    """`scheme://host[:port]/path` of a URL: no credentials, no query (they may hold secrets)."""
    try:
        parts = urlsplit(url.strip())
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}" if parts.scheme else "<not a URL>"
