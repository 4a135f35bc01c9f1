"""Where a webhook may be sent: public addresses only, unless a configured network allows more.

A customer chooses the URL, and the POST leaves from inside our network: a URL naming
127.0.0.1, a private range or the cloud metadata address (169.254.169.254) would let any
account make requests into places only our services reach (server-side request forgery).

So a destination is checked at registration and again at every delivery, and a delivery
connects to the very addresses it checked (``target``), never to a name resolved again
later: a name that answers a public address to the check and 127.0.0.1 to the connection
(DNS rebinding) gets nothing. ``notifications.webhook_allowed_networks`` lets more in (the
development config allows 127.0.0.0/8 for local receivers); production allows none.
"""
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import eventlet

DEFAULT_PORTS = {"http": 80, "https": 443}
# The well-known NAT64 prefix carries an IPv4 address in its last 32 bits (RFC 6052).
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class Refused(ValueError):
    """A destination that must not be reached; the message says why, for its owner."""


class Unresolved(ValueError):
    """A name that gives no address (now): nothing to check, nothing to connect to."""


@dataclass(frozen=True)
class Target:
    """A checked destination: connect to ``addresses`` (in order), say ``host`` in the
    Host header and in TLS (SNI, certificate check)."""

    scheme: str
    host: str  # ASCII (IDNA) name or IP literal, without brackets
    port: int
    host_header: str
    path: str  # path and query, as sent on the request line
    addresses: tuple  # of str, each checked
    userinfo: str = None  # "user:password" of the URL, unquoted, or None


def parse_networks(value):
    """A tuple of networks from a comma- or space-separated string or a list of them;
    empty (None, "", "none") for none."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.replace(",", " ").split()
        if [item.lower() for item in value] == ["none"]:
            return ()
    networks = []
    for item in value:
        if isinstance(item, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            networks.append(item)
            continue
        try:
            networks.append(ipaddress.ip_network(str(item).strip(), strict=False))
        except ValueError:
            raise ValueError("{!r} is not a network (e.g. 127.0.0.0/8 or fd00::/8)".format(
                item)) from None
    return tuple(networks)


def _unwrapped(address):
    """The IPv4 address an IPv6 one stands for (mapped, NAT64, 6to4), else itself: a
    private IPv4 address must not pass dressed as IPv6."""
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def _kind(address):
    """Why ``address`` is not public, or None when it is."""
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.version == 6 and address in ipaddress.ip_network("fc00::/7"):
        return "a unique local address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "not a public address"
    return None


def refusal(text, allowed=()):
    """Why a webhook may not go to the address ``text`` ("a loopback address"), or None when
    it may: public, or in an ``allowed`` network."""
    address = ipaddress.ip_address(text.split("%", 1)[0])  # no IPv6 zone: a scope is local
    plain = _unwrapped(address)
    if any(plain in network or address in network for network in allowed):
        return None
    why = _kind(plain)
    if why is None and getattr(address, "ipv4_mapped", None) is None:
        why = _kind(address)  # (a mapped address is just its IPv4 address)
    return why


def _literal(host):
    """The address a host names by itself, or None for a name. The forms C's inet_aton
    reads (2130706433, 0x7f.1, 127.1: all 127.0.0.1) count too: a resolver would read them
    so, where a check that saw only a name would pass them."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def _ascii_host(hostname):
    try:
        return hostname.encode("idna").decode("ascii")
    except UnicodeError:
        raise Refused("the host {!r} is not a valid name".format(hostname)) from None


def resolve(host, port, timeout_s):
    """Every address ``host`` has now (an IP literal is its own), without duplicates."""
    literal = _literal(host)
    if literal is not None:
        return (str(literal),)
    deadline = eventlet.Timeout(timeout_s)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except eventlet.Timeout as raised:
        if raised is not deadline:
            raise  # the caller's own, longer deadline
        raise Unresolved("the host {} did not resolve within {:g} s".format(
            host, timeout_s)) from None
    except (OSError, UnicodeError) as error:
        raise Unresolved("the host {} does not resolve: {}".format(host, error)) from None
    finally:
        deadline.cancel()
    addresses = tuple(dict.fromkeys(info[4][0] for info in found))
    if not addresses:
        raise Unresolved("the host {} has no address".format(host))
    return addresses


def target(url, allowed, timeout_s):
    """The checked ``Target`` of an http(s) URL: ``Refused`` when its host is, or resolves
    to, any address not allowed (one bad answer is enough: a client may try any of them);
    ``Unresolved`` when the name gives no address now."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = _ascii_host(parts.hostname or "")
    literal = _literal(host)
    host = host if literal is None or "%" in host else str(literal)
    port = parts.port or DEFAULT_PORTS[scheme]
    addresses = resolve(host, port, timeout_s)
    for address in addresses:
        why = refusal(address, allowed)
        if why is not None:
            plain = _unwrapped(ipaddress.ip_address(address))
            shown = address if str(plain) == address else "{} (that is {})".format(
                address, plain)
            named = shown if literal is not None else "{} resolves to {}, which".format(
                host, shown)
            raise Refused("{} is {}; webhooks go to public addresses only".format(named, why))
    shown = "[{}]".format(host) if ":" in host else host
    host_header = shown if parts.port is None else "{}:{}".format(shown, parts.port)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    userinfo = None
    if parts.username is not None:
        userinfo = "{}:{}".format(unquote(parts.username), unquote(parts.password or ""))
    return Target(scheme, host, port, host_header, path, addresses, userinfo)


def is_literal(url):
    """True when the URL names an IP address (its check can never change)."""
    return _literal(urlsplit(url).hostname or "") is not None
