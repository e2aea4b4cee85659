"""Where a network source may point (SSRF guard): the scheme, and every address its host resolves to.

A stream URL makes the service open connections on the caller's behalf, so it must not reach what
the caller cannot: loopback services, cloud metadata (link-local), multicast, the unspecified address.
Cameras sit on private LANs, so private ranges are allowed by default. The check runs when a stream is
added (literal and resolved addresses) and again before every (re)connect, on every address the name
resolves to then (DNS rebinding), and FFmpeg is handed the checked address, so it resolves nothing itself.

Whatever the reason a source cannot be used before it delivered a frame (refused here, unreachable,
refused by the peer, not a video), the caller sees one text, `SOURCE_UNAVAILABLE`: different texts would
tell them which internal hosts and ports answer. The precise reason goes to the log.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SOURCE_UNAVAILABLE = "source unavailable (unreachable, refused, not allowed by the source policy, or not a video)"
NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https")  # what FFmpeg can open as a camera
DEFAULT_SCHEMES = ("rtsp", "rtsps")  # http(s): FFmpeg follows redirects and playlists the policy cannot see
KEYWORDS = ("private", "public")
PRIVATE_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}


SOURCE_REFUSED = "source not allowed by this service's source policy (settings source_networks, source_schemes)"


def site(url: str) -> str:
    """A URL as logs and errors show it: scheme and host only, since many URLs an operator configures carry a
    secret in the path or the query (Slack's and Discord's webhooks), not only in a password."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # an unbalanced '[', a port that is not a number
        return "(unparsable URL)"
    return f"{parts.scheme}://{parts.hostname or ''}{port}"


class SourceRefused(ValueError):
    """The source is not allowed; the message is the precise reason, for the log and the operator only."""


class Unresolved(SourceRefused):
    """The host name does not resolve (now): not a policy verdict, it may resolve later."""


def parse_network(entry: str) -> str | IPNetwork:
    """A `source_networks` entry: 'private', 'public', or a CIDR / single address (ValueError otherwise)."""
    text = entry.strip().lower()
    if text in KEYWORDS:
        return text
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{entry!r} is neither 'private', 'public' nor an IP network (e.g. 127.0.0.0/8)") from None


def _plain(ip: IPAddress) -> IPAddress:
    """IPv4-mapped and 6to4/NAT64-free: ::ffff:127.0.0.1 is judged as 127.0.0.1."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def special(ip: IPAddress) -> bool:
    """Addresses refused unless a listed network names them: loopback, link-local, multicast, unspecified,
    reserved (and IPv6 site-local, deprecated)."""
    return bool(
        ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved
        or getattr(ip, "is_site_local", False)
    )  # fmt: skip


Resolver = Callable[[str, int], Iterable[str]]


def system_resolver(host: str, port: int) -> list[str]:
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


@dataclass(frozen=True)
class SourcePolicy:
    schemes: tuple[str, ...] = DEFAULT_SCHEMES
    networks: tuple[IPNetwork, ...] = ()
    private: bool = True
    public: bool = True
    resolver: Resolver = system_resolver

    @classmethod
    def parse(cls, networks: Iterable[str], schemes: Iterable[str], resolver: Resolver = system_resolver):
        entries = [parse_network(e) for e in networks]
        cidrs = tuple(e for e in entries if not isinstance(e, str))
        return cls(tuple(s.lower() for s in schemes), cidrs, "private" in entries, "public" in entries, resolver)

    def address_allowed(self, address: str | IPAddress) -> bool:
        ip = _plain(ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address))
        if any(ip.version == n.version and ip in n for n in self.networks):
            return True
        if special(ip):
            return False
        if self.private and any(ip.version == n.version and ip in n for n in PRIVATE_NETWORKS):
            return True
        return self.public and ip.is_global

    def check(self, url: str, resolve: bool = True) -> list[str]:
        """The addresses the URL's host stands for, every one allowed; SourceRefused says why not.
        Without `resolve`, only a literal address is checked (a name: [])."""
        try:
            parts = urlsplit(url)
        except ValueError as e:  # e.g. an unbalanced '[' (invalid IPv6 URL)
            raise SourceRefused(f"bad URL: {e}") from None
        scheme = parts.scheme.lower()
        if scheme not in self.schemes:
            raise SourceRefused(f"scheme {scheme or '(none)'!r} not in source_schemes {list(self.schemes)}")
        try:
            host, port = parts.hostname, parts.port
        except ValueError as e:  # port out of range or not a number
            raise SourceRefused(f"bad address: {e}") from None
        if not host:
            raise SourceRefused("no host")
        try:
            literal: IPAddress | None = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [host]
        elif not resolve:
            return []
        else:
            try:
                addresses = list(dict.fromkeys(self.resolver(host, port or DEFAULT_PORTS.get(scheme, 0))))
            except (OSError, UnicodeError) as e:
                raise Unresolved(f"{host} does not resolve: {e}") from None
            if not addresses:
                raise Unresolved(f"{host} resolves to no address")
        refused = [a for a in addresses if not self.address_allowed(a)]
        if refused:
            raise SourceRefused(f"{host} -> {', '.join(refused)}: not in source_networks")
        return addresses

    def pin(self, url: str) -> str:
        """The URL with its host replaced by the first checked address, so FFmpeg connects where we checked
        (credentials, port, path kept). SourceRefused when any address the name resolves to is not allowed."""
        addresses = self.check(url)
        parts = urlsplit(url)
        address = addresses[0].split("%", 1)[0]
        host = f"[{address}]" if ":" in address else address
        if parts.port is not None:
            host += f":{parts.port}"
        userinfo = parts.netloc.rpartition("@")[0]
        return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}" if userinfo else host))
