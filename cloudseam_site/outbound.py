"""The one way CloudSeam calls out over HTTP: the `http` executor and webhook notifications.

A URL in a machine file or an admin form must not become a way into the network CloudSeam runs in
(server-side request forgery). Every request therefore:

- speaks only http or https;
- resolves its host once, refuses it when any address is private, loopback, link-local, multicast,
  reserved, unspecified or a cloud metadata address (IPv4-mapped IPv6 included), and connects to
  exactly that address with the original Host header and TLS server name (no DNS rebinding between
  the check and the connection);
- refuses host names that only look like numbers (`2130706433`, `0x7f000001`, `0177.0.0.1`): they
  are addresses in disguise;
- follows at most MAX_REDIRECTS redirects by hand, checking each hop the same way; 307 and 308 keep
  the method and body, 301/302/303 are followed only for GET and HEAD (a POST is answered with the
  redirect itself rather than silently turned into a GET);
- has a timeout per connection step and reads at most `max_bytes` of the answer.

`CLOUDSEAM_OUTBOUND_ALLOW` (addresses, CIDR networks or host names) lets chosen internal targets
through. Imports nothing of ours.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

MAX_REDIRECTS = 5
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_BYTES = 64 * 1024
REDIRECTS = {301, 302, 303, 307, 308}
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200"))
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*\.?$", re.IGNORECASE)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Refused(Exception):
    """The request was not sent (or not followed): `message` says why, for the person who configured it."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class Policy:
    """What may be reached: `networks` and `hosts` allowed even when internal."""

    networks: tuple[Network, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, items: Iterable[str]) -> Policy:
        """`10.0.0.0/8`, `127.0.0.1`, `::1` or `hooks.internal` — a bad entry raises ValueError."""
        networks, hosts = [], set()
        for item in (i.strip() for i in items):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
            except ValueError:
                if not re.fullmatch(r"[A-Za-z0-9.-]+", item) or _NUMERIC_HOST.match(item):
                    raise ValueError(f"{item!r} is not an IP address, network or host name") from None
                hosts.add(item.lower().rstrip("."))
        return cls(tuple(networks), frozenset(hosts))

    def allows_address(self, address: Address) -> bool:
        return any(address in network for network in self.networks if network.version == address.version)


@dataclass
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str  # the last URL, after redirects
    redirects: list[str] = field(default_factory=list)
    truncated: bool = False


def default_policy() -> Policy:
    """From settings when Django is set up (the worker and web processes), else nothing extra allowed."""
    try:
        from django.conf import settings

        return Policy.parse(settings.CLOUDSEAM_OUTBOUND_ALLOW)
    except Exception:  # noqa: BLE001 - no Django (a plain script): the strict default
        return Policy()


def forbidden_reason(address: Address) -> str | None:
    """Why an address may not be called, or None when it is a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        inner = forbidden_reason(address.ipv4_mapped)
        return f"an IPv4-mapped form of {address.ipv4_mapped} ({inner})" if inner else None
    checks = (
        (address in METADATA_ADDRESSES, "a cloud metadata address"),
        (address.is_loopback, "a loopback address"),
        (address.is_unspecified, "an unspecified address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a public address"),
    )
    return next((why for bad, why in checks if bad), None)


def check_host(host: str, port: int, policy: Policy) -> Address:
    """Resolve `host` once and return the address to connect to, or raise Refused."""
    name = host.lower().rstrip(".")
    literal = _literal(name)
    if literal is None and _NUMERIC_HOST.match(name):
        raise Refused(f"the host {host!r} is a number, not a name or a dotted address; write the address plainly")
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise Refused(f"the host {host!r} could not be resolved ({exc})") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
    if name in policy.hosts:
        return addresses[0]
    for address in addresses:
        why = forbidden_reason(address)
        if why and not policy.allows_address(address):
            shown = host if literal is not None else f"{host!r} resolves to {address}, which"
            raise Refused(f"{shown} is {why}; CloudSeam does not call internal addresses unless "
                          "CLOUDSEAM_OUTBOUND_ALLOW lists them")
    return addresses[0]


def _literal(name: str) -> Address | None:
    try:
        return ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return None


def _split(url: str) -> tuple[urllib.parse.SplitResult, str, int]:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused(f"{url!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise Refused(f"only http:// and https:// URLs are called, not {url!r}")
    if not parts.hostname:
        raise Refused(f"{url!r} has no host")
    if parts.username or parts.password:
        raise Refused(f"{url!r} carries a user name or password; send credentials in a header instead")
    return parts, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _connection(parts: urllib.parse.SplitResult, host: str, port: int, address: Address,
                timeout: float) -> http.client.HTTPConnection:
    """A connection to `address` that still says `host` (Host header, TLS server name, certificate check)."""
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)

    def connect_pinned(_address, timeout=timeout, source_address=None, **_kw):
        return socket.create_connection((str(address), port), timeout, source_address)

    conn._create_connection = connect_pinned  # http.client's own hook for opening the socket
    return conn


def request(method: str, url: str, *, body: bytes | None = None, headers: Mapping[str, str] | None = None,
            timeout: float = DEFAULT_TIMEOUT, max_bytes: int = DEFAULT_MAX_BYTES,
            policy: Policy | None = None) -> Response:
    """Send one request through the guard; raises Refused, or OSError/TimeoutError for network failures."""
    policy = default_policy() if policy is None else policy
    method = method.upper()
    seen: list[str] = []
    for _hop in range(MAX_REDIRECTS + 1):
        response = _send_once(method, url, body, headers or {}, timeout, max_bytes, policy)
        location = response.headers.get("location")
        follow = response.status in (307, 308) or (response.status in REDIRECTS and method in ("GET", "HEAD"))
        if not (location and follow):
            response.redirects = seen
            return response
        seen.append(url)
        url = urllib.parse.urljoin(url, location)
    raise Refused(f"more than {MAX_REDIRECTS} redirects (last to {url!r}); not followed")


def _send_once(method: str, url: str, body: bytes | None, headers: Mapping[str, str], timeout: float,
               max_bytes: int, policy: Policy) -> Response:
    parts, host, port = _split(url)
    address = check_host(host, port, policy)
    conn = _connection(parts, host, port, address, timeout)
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    try:
        conn.request(method, target, body=body, headers=dict(headers))
        answer = conn.getresponse()
        data = answer.read(max_bytes + 1) if method != "HEAD" else b""
        return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, data[:max_bytes], url,
                        truncated=len(data) > max_bytes)
    except http.client.HTTPException as exc:
        raise ConnectionError(f"the server at {host} sent no valid HTTP answer ({type(exc).__name__})") from None
    finally:
        conn.close()

