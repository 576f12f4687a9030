"""Where batch webhooks may point: the URL rules and the address policy, as data.

Every range of IANA's IPv4 and IPv6 Special-Purpose Address Registries (plus multicast, the
IPv6 space outside 2000::/3, and the cloud metadata endpoints) is a row of `REGISTRY`, and an
address is judged by the most specific row that holds it, as a router picks a route. A row
says how far the address reaches:

- `PUBLIC`: anywhere on the internet; always allowed.
- `LOOPBACK`: this machine; allowed only when the policy allows loopback.
- `PRIVATE`: a private, shared or operator-local network; allowed only when the policy
  allows private networks.
- `NEVER`: unspecified, link-local, multicast, broadcast, reserved, documentation,
  benchmarking, cloud metadata: always refused, because no webhook receiver lives there and
  some of them (metadata services) are exactly what an attacker wants to reach.

IPv6 addresses that carry an IPv4 address (IPv4-mapped, IPv4-compatible, 6to4, NAT64,
Teredo) are judged by every IPv4 address they carry as well, so `::ffff:169.254.169.254` or
`2002:a9fe:a9fe::` are refused like `169.254.169.254`. Host names written as numbers
(`2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`) are read the way the C library's
`inet_aton` and the WHATWG URL standard read them, and judged by the address they mean.

The check runs on the address that is actually connected to, after resolution, so a name
cannot be re-pointed between the check and the request (DNS rebinding).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_LENGTH = 2000
MAX_LABEL_LENGTH = 63
MAX_HOST_LENGTH = 253


class RefusedTarget(ValueError):
    """The URL or the address it resolves to is not allowed; the message says why."""


class Reach(enum.Enum):
    PUBLIC = "public"
    LOOPBACK = "loopback"
    PRIVATE = "private"
    NEVER = "never"


class Embedding(enum.Enum):
    """Where an IPv6 range carries an IPv4 address."""

    NONE = "none"
    LOW_32_BITS = "the last 32 bits"  # IPv4-mapped, IPv4-compatible, NAT64 64:ff9b::/96
    SIX_TO_FOUR = "bits 16 to 47 (6to4)"
    TEREDO = "the Teredo server and client fields"
    RFC_6052 = "any RFC 6052 position (local-use NAT64)"


@dataclass(frozen=True)
class SpecialRange:
    network: IPNetwork
    name: str
    source: str
    reach: Reach
    embedding: Embedding = Embedding.NONE


def _row(
    network: str, name: str, source: str, reach: Reach, embedding: Embedding = Embedding.NONE
) -> SpecialRange:
    return SpecialRange(ipaddress.ip_network(network), name, source, reach, embedding)


P, L, R, N = Reach.PUBLIC, Reach.LOOPBACK, Reach.PRIVATE, Reach.NEVER

# Anycast service addresses (PCP, TURN, DNS-SD SRP) are PRIVATE although the registry calls
# them globally reachable: anycast reaches the nearest instance, which is usually the
# operator's own gateway. Everything else follows the registry's "globally reachable" column.
REGISTRY: tuple[SpecialRange, ...] = (
    # IPv4: the default, then the IANA IPv4 Special-Purpose Address Registry.
    _row("0.0.0.0/0", "unicast", "IANA IPv4 Address Space", P),
    _row("0.0.0.0/8", '"this network", unspecified', "RFC 791", N),
    _row("0.0.0.0/32", '"this host on this network", unspecified', "RFC 1122", N),
    _row("10.0.0.0/8", "private-use", "RFC 1918", R),
    _row("100.64.0.0/10", "shared address space (carrier-grade NAT)", "RFC 6598", R),
    _row("127.0.0.0/8", "loopback", "RFC 1122", L),
    _row("169.254.0.0/16", "link-local", "RFC 3927", N),
    _row("172.16.0.0/12", "private-use", "RFC 1918", R),
    _row("192.0.0.0/24", "IETF protocol assignments", "RFC 6890", R),
    _row("192.0.0.0/29", "IPv4 service continuity prefix", "RFC 7335", R),
    _row("192.0.0.8/32", "IPv4 dummy address", "RFC 7600", N),
    _row("192.0.0.9/32", "Port Control Protocol anycast", "RFC 7723", R),
    _row("192.0.0.10/32", "TURN anycast", "RFC 8155", R),
    _row("192.0.0.170/32", "NAT64/DNS64 discovery", "RFC 8880", N),
    _row("192.0.0.171/32", "NAT64/DNS64 discovery", "RFC 8880", N),
    _row("192.0.2.0/24", "documentation (TEST-NET-1)", "RFC 5737", N),
    _row("192.31.196.0/24", "AS112-v4", "RFC 7535", P),
    _row("192.52.193.0/24", "AMT", "RFC 7450", P),
    _row("192.88.99.0/24", "deprecated 6to4 relay anycast", "RFC 7526", N),
    _row("192.168.0.0/16", "private-use", "RFC 1918", R),
    _row("192.175.48.0/24", "direct delegation AS112 service", "RFC 7534", P),
    _row("198.18.0.0/15", "benchmarking", "RFC 2544", N),
    _row("198.51.100.0/24", "documentation (TEST-NET-2)", "RFC 5737", N),
    _row("203.0.113.0/24", "documentation (TEST-NET-3)", "RFC 5737", N),
    _row("224.0.0.0/4", "multicast", "RFC 5771", N),
    _row("240.0.0.0/4", "reserved for future use", "RFC 1112", N),
    _row("255.255.255.255/32", "limited broadcast", "RFC 919", N),
    # IPv6: IANA IPv6 Address Space (only 2000::/3 is global unicast), then the IANA IPv6
    # Special-Purpose Address Registry.
    _row("::/0", "reserved by the IETF (outside global unicast 2000::/3)", "RFC 4291", N),
    _row("2000::/3", "global unicast", "RFC 4291", P),
    _row("::/128", "unspecified", "RFC 4291", N),
    _row("::1/128", "loopback", "RFC 4291", L),
    _row("::/96", "deprecated IPv4-compatible", "RFC 4291", N, Embedding.LOW_32_BITS),
    _row("::ffff:0:0/96", "IPv4-mapped", "RFC 4291", P, Embedding.LOW_32_BITS),
    _row("64:ff9b::/96", "IPv4/IPv6 translation (NAT64)", "RFC 6052", P, Embedding.LOW_32_BITS),
    _row("64:ff9b:1::/48", "local-use IPv4/IPv6 translation", "RFC 8215", R, Embedding.RFC_6052),
    _row("100::/64", "discard-only", "RFC 6666", N),
    _row("2001::/23", "IETF protocol assignments", "RFC 2928", N),
    _row("2001::/32", "Teredo", "RFC 4380", P, Embedding.TEREDO),
    _row("2001:1::1/128", "Port Control Protocol anycast", "RFC 7723", R),
    _row("2001:1::2/128", "TURN anycast", "RFC 8155", R),
    _row("2001:1::3/128", "DNS-SD service registration protocol anycast", "RFC 9665", R),
    _row("2001:2::/48", "benchmarking", "RFC 5180", N),
    _row("2001:3::/32", "AMT", "RFC 7450", P),
    _row("2001:4:112::/48", "AS112-v6", "RFC 7535", P),
    _row("2001:10::/28", "deprecated ORCHID", "RFC 4843", N),
    _row("2001:20::/28", "ORCHIDv2", "RFC 7343", P),
    _row("2001:30::/28", "drone remote ID entity tags", "RFC 9374", P),
    _row("2001:db8::/32", "documentation", "RFC 3849", N),
    _row("2002::/16", "6to4", "RFC 3056", P, Embedding.SIX_TO_FOUR),
    _row("2620:4f:8000::/48", "direct delegation AS112 service", "RFC 7534", P),
    _row("3fff::/20", "documentation", "RFC 9637", N),
    _row("5f00::/16", "segment routing (SRv6) SIDs", "RFC 9602", N),
    _row("fc00::/7", "unique local", "RFC 4193", R),
    _row("fe80::/10", "link-local", "RFC 4291", N),
    _row("fec0::/10", "deprecated site-local", "RFC 3879", N),
    _row("ff00::/8", "multicast", "RFC 4291", N),
    # Cloud metadata and platform endpoints: credentials live behind them.
    _row(
        "169.254.169.254/32",
        "cloud metadata (AWS, GCP, Azure...), link-local",
        "cloud provider docs",
        N,
    ),
    _row("169.254.170.2/32", "AWS ECS task metadata, link-local", "cloud provider docs", N),
    _row("100.100.100.200/32", "Alibaba Cloud instance metadata", "cloud provider docs", N),
    _row("192.0.0.192/32", "Oracle Cloud instance metadata", "cloud provider docs", N),
    _row("168.63.129.16/32", "Azure platform (WireServer)", "cloud provider docs", N),
    _row("fd00:ec2::254/128", "AWS instance metadata (IPv6)", "cloud provider docs", N),
    _row("fd00:ec2::23/128", "AWS DNS resolver (IPv6)", "cloud provider docs", N),
    _row("fd20:ce::254/128", "Google Cloud instance metadata (IPv6)", "cloud provider docs", N),
)


_ROWS_BY_VERSION = {
    version: tuple(row for row in REGISTRY if row.network.version == version) for version in (4, 6)
}


def most_specific_range(address: IPAddress) -> SpecialRange:
    """The registry row with the longest prefix that holds `address` (there always is one)."""
    plain = _without_scope(address)
    holding = [row for row in _ROWS_BY_VERSION[plain.version] if plain in row.network]
    # Every family has a /0 row, so `holding` is never empty.
    return max(holding, key=lambda row: row.network.prefixlen)


def embedded_ipv4(address: ipaddress.IPv6Address, embedding: Embedding) -> tuple[IPAddress, ...]:
    """The IPv4 addresses an IPv6 address carries in the place its range puts them."""
    value = int(address)
    if embedding is Embedding.LOW_32_BITS:
        return (ipaddress.IPv4Address(value & 0xFFFFFFFF),)
    if embedding is Embedding.SIX_TO_FOUR:
        return (ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF),)
    if embedding is Embedding.TEREDO:
        server = (value >> 64) & 0xFFFFFFFF
        client = ~value & 0xFFFFFFFF  # stored inverted
        return (ipaddress.IPv4Address(server), ipaddress.IPv4Address(client))
    if embedding is Embedding.RFC_6052:
        return tuple(_rfc6052_candidates(value))
    return ()


def _rfc6052_candidates(value: int) -> Iterator[ipaddress.IPv4Address]:
    """The IPv4 address at every RFC 6052 position that this address could be using.

    A local-use prefix may be any length from /48 to /96 and the address does not say which,
    so every placement whose reserved bits (bits 64-71, and the suffix) are zero is judged.
    """
    octets = value.to_bytes(16, "big")
    yield ipaddress.IPv4Address(octets[12:16])  # /96
    if octets[8] != 0:
        return
    for prefix_octets in (6, 7, 8):  # /48, /56, /64
        carried = (octets[prefix_octets:8] + octets[9:])[:4]
        suffix = octets[9 + 4 - (8 - prefix_octets) :]
        if not any(suffix):
            yield ipaddress.IPv4Address(carried)


@dataclass(frozen=True)
class Judgement:
    """What an address is: its own row, and the rows of the IPv4 addresses it carries."""

    address: IPAddress
    range: SpecialRange
    carried: tuple[tuple[IPAddress, SpecialRange], ...]


def judge(address: IPAddress) -> Judgement:
    plain = _without_scope(address)
    row = most_specific_range(plain)
    carried: tuple[tuple[IPAddress, SpecialRange], ...] = ()
    if isinstance(plain, ipaddress.IPv6Address):
        carried = tuple(
            (inner, most_specific_range(inner)) for inner in embedded_ipv4(plain, row.embedding)
        )
    return Judgement(plain, row, carried)


@dataclass(frozen=True)
class TargetPolicy:
    allow_loopback: bool = True
    allow_private: bool = True

    def allows(self, reach: Reach) -> bool:
        if reach is Reach.LOOPBACK:
            return self.allow_loopback
        if reach is Reach.PRIVATE:
            return self.allow_private
        return reach is Reach.PUBLIC

    def refusal(self, address: IPAddress) -> str | None:
        """Why `address` may not be connected to, or None if it may."""
        judgement = judge(address)
        if not self.allows(judgement.range.reach):
            return f"{judgement.address} is {self._why(judgement.range)}"
        for inner, row in judgement.carried:
            if not self.allows(row.reach):
                return (
                    f"{judgement.address} ({judgement.range.name}) carries the IPv4 address "
                    f"{inner}, which is {self._why(row)}"
                )
        return None

    def check_address(self, address: IPAddress) -> None:
        reason = self.refusal(address)
        if reason is not None:
            raise RefusedTarget(reason)

    def _why(self, row: SpecialRange) -> str:
        where = f"in {row.network} ({row.name}, {row.source})"
        if row.reach is Reach.LOOPBACK:
            return f"{where}; this server's policy refuses loopback addresses."
        if row.reach is Reach.PRIVATE:
            return f"{where}; this server's policy refuses private networks."
        return f"{where}; webhooks may never use it."


def _without_scope(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return ipaddress.IPv6Address(int(address))
    return address


# --- URLs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookUrl:
    scheme: str
    host: str  # lower case; an IP address in its canonical form, without brackets
    port: int
    path_and_query: str
    address: IPAddress | None = None  # set when the host is an IP address, however written

    @property
    def default_port(self) -> int:
        return 443 if self.scheme == "https" else 80

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == self.default_port else f"{host}:{self.port}"


_AUTHORITY = re.compile(r"(\[[^\]]*\]|[^\[\]:]+)(:[0-9]*)?")
_LABEL = re.compile(r"[a-z0-9_-]+")
_DECIMAL = re.compile(r"[0-9]+")
_HEX = re.compile(r"0x[0-9a-f]*")
_OCTAL = re.compile(r"0[0-7]+")


def parse_webhook_url(url: str) -> WebhookUrl:
    """The parts of a webhook URL, or `RefusedTarget` saying what is wrong with it."""
    if len(url) > MAX_URL_LENGTH:
        raise RefusedTarget(f"The webhook URL is longer than {MAX_URL_LENGTH} characters.")
    _check_characters(url)
    try:
        parts = urlsplit(url)
        port = parts.port
        hostname = parts.hostname
    except ValueError as exc:
        raise RefusedTarget(f"The webhook URL is not valid: {exc}.") from None
    if parts.scheme not in ("http", "https"):
        raise RefusedTarget("Webhook URLs must use http or https.")
    if "@" in parts.netloc:
        raise RefusedTarget("The webhook URL must not carry credentials.")
    if not hostname:
        raise RefusedTarget("The webhook URL has no host.")
    if not _AUTHORITY.fullmatch(parts.netloc):
        raise RefusedTarget(f"The webhook URL's host and port {parts.netloc!r} are not valid.")
    if port == 0:
        raise RefusedTarget("The webhook URL's port must be between 1 and 65535.")
    bracketed = parts.netloc.startswith("[")
    host, address = _parse_host(hostname, bracketed)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    # What RFC 3986 does not allow in a request target is sent percent-encoded.
    path = quote(path, safe="/?:@!$&'()*+,;=%-._~")
    default_port = 443 if parts.scheme == "https" else 80
    return WebhookUrl(parts.scheme, host, port or default_port, path, address)


def _check_characters(url: str) -> None:
    for char in url:
        code = ord(char)
        if code > 0x7E:
            what = "DEL" if code == 0x7F else f"the non-ASCII character U+{code:04X}"
            raise RefusedTarget(
                f"The webhook URL contains {what}; percent-encode it "
                "(write international host names in their xn-- form)."
            )
        if code <= 0x20:
            what = "a space" if code == 0x20 else f"the control character U+{code:04X}"
            raise RefusedTarget(f"The webhook URL contains {what}; percent-encode it.")
        if char == "\\":
            # WHATWG parsers read a backslash as a slash and others do not: refusing it keeps
            # every reader of the URL agreeing on its host.
            raise RefusedTarget("The webhook URL contains a backslash; percent-encode it as %5C.")


def _parse_host(hostname: str, bracketed: bool) -> tuple[str, IPAddress | None]:
    if bracketed:
        if "%" in hostname:
            raise RefusedTarget("The webhook URL's IPv6 address must not carry a zone (%).")
        try:
            ipv6 = ipaddress.IPv6Address(hostname)
        except ValueError:
            raise RefusedTarget(
                f"The webhook URL's host [{hostname}] is not an IPv6 address."
            ) from None
        return str(ipv6), ipv6
    if len(hostname) > MAX_HOST_LENGTH:
        raise RefusedTarget(f"The webhook URL's host is longer than {MAX_HOST_LENGTH} characters.")
    labels = hostname.split(".")
    for label in labels:
        if not label:
            raise RefusedTarget(
                f"The webhook URL's host {hostname!r} has an empty label "
                "(a dot at the start or end, or two dots in a row)."
            )
        if len(label) > MAX_LABEL_LENGTH:
            raise RefusedTarget(
                f"The webhook URL's host has a label longer than {MAX_LABEL_LENGTH} characters."
            )
        if not _LABEL.fullmatch(label):
            raise RefusedTarget(
                f"The webhook URL's host {hostname!r} may only hold letters, digits, '-', '_' "
                "and dots."
            )
    if _is_number(labels[-1]):
        ipv4 = _numeric_ipv4(labels, hostname)
        return str(ipv4), ipv4
    return hostname, None


def _is_number(label: str) -> bool:
    return bool(_DECIMAL.fullmatch(label) or _HEX.fullmatch(label))


def _numeric_ipv4(labels: list[str], hostname: str) -> ipaddress.IPv4Address:
    """The address a host that ends in a number means, read as `inet_aton` reads it.

    One to four parts, each decimal, octal (leading 0) or hexadecimal (0x); the last part
    fills the bytes the others leave. A host that ends in a number but is not such an
    address is refused: resolvers disagree on what it means.
    """
    ambiguous = RefusedTarget(
        f"The webhook URL's host {hostname!r} ends in a number but is not an IPv4 address; "
        "it is refused as ambiguous."
    )
    if len(labels) > 4:
        raise ambiguous
    numbers = []
    for label in labels:
        if _HEX.fullmatch(label):
            numbers.append(int(label[2:] or "0", 16))
        elif _OCTAL.fullmatch(label):
            numbers.append(int(label, 8))
        elif _DECIMAL.fullmatch(label) and not (len(label) > 1 and label.startswith("0")):
            numbers.append(int(label))
        else:
            raise ambiguous  # letters, or a leading 0 followed by 8 or 9
    *leading, last = numbers
    if any(part > 0xFF for part in leading) or last >= 256 ** (5 - len(numbers)):
        raise ambiguous
    value = last
    for index, part in enumerate(leading):
        value |= part << (8 * (3 - index))
    return ipaddress.IPv4Address(value)
