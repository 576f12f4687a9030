"""The webhook target policy over IANA's special-purpose registries, in every spelling."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.domain.webhook_targets import (
    REGISTRY,
    IPAddress,
    Reach,
    RefusedTarget,
    TargetPolicy,
    WebhookUrl,
    most_specific_range,
    parse_webhook_url,
)

PUBLIC, LOOPBACK, PRIVATE, NEVER = Reach.PUBLIC, Reach.LOOPBACK, Reach.PRIVATE, Reach.NEVER

POLICIES = {
    "permissive": TargetPolicy(allow_loopback=True, allow_private=True),
    "loopback-only": TargetPolicy(allow_loopback=True, allow_private=False),
    "private-only": TargetPolicy(allow_loopback=False, allow_private=True),
    "strict": TargetPolicy(allow_loopback=False, allow_private=False),
}

# Written by hand from the registries, not derived from the code under test: a sample address
# in every range, with every reach that must be allowed for the address to be allowed (the
# address's own and those of the IPv4 addresses it carries).
TABLE: list[tuple[str, tuple[Reach, ...]]] = [
    # IPv4 Special-Purpose Address Registry
    ("0.0.0.0", (NEVER,)),
    ("0.1.2.3", (NEVER,)),
    ("0.255.255.255", (NEVER,)),
    ("10.0.0.0", (PRIVATE,)),
    ("10.255.255.255", (PRIVATE,)),
    ("100.64.0.0", (PRIVATE,)),
    ("100.127.255.255", (PRIVATE,)),
    ("127.0.0.1", (LOOPBACK,)),
    ("127.255.255.254", (LOOPBACK,)),
    ("169.254.0.1", (NEVER,)),
    ("169.254.255.255", (NEVER,)),
    ("172.16.0.0", (PRIVATE,)),
    ("172.31.255.255", (PRIVATE,)),
    ("192.0.0.1", (PRIVATE,)),
    ("192.0.0.7", (PRIVATE,)),
    ("192.0.0.8", (NEVER,)),
    ("192.0.0.9", (PRIVATE,)),
    ("192.0.0.10", (PRIVATE,)),
    ("192.0.0.100", (PRIVATE,)),
    ("192.0.0.170", (NEVER,)),
    ("192.0.0.171", (NEVER,)),
    ("192.0.0.255", (PRIVATE,)),
    ("192.0.2.1", (NEVER,)),
    ("192.31.196.1", (PUBLIC,)),
    ("192.52.193.1", (PUBLIC,)),
    ("192.88.99.1", (NEVER,)),
    ("192.168.0.1", (PRIVATE,)),
    ("192.168.255.255", (PRIVATE,)),
    ("192.175.48.1", (PUBLIC,)),
    ("198.18.0.1", (NEVER,)),
    ("198.19.255.255", (NEVER,)),
    ("198.51.100.7", (NEVER,)),
    ("203.0.113.9", (NEVER,)),
    ("240.0.0.1", (NEVER,)),
    ("255.255.255.254", (NEVER,)),
    ("255.255.255.255", (NEVER,)),
    # IPv4 multicast, and the edges around the special ranges
    ("224.0.0.1", (NEVER,)),
    ("239.255.255.255", (NEVER,)),
    ("1.1.1.1", (PUBLIC,)),
    ("8.8.8.8", (PUBLIC,)),
    ("100.63.255.255", (PUBLIC,)),
    ("100.128.0.0", (PUBLIC,)),
    ("172.15.255.255", (PUBLIC,)),
    ("172.32.0.0", (PUBLIC,)),
    ("223.255.255.255", (PUBLIC,)),
    # Cloud metadata and platform endpoints
    ("169.254.169.254", (NEVER,)),
    ("169.254.170.2", (NEVER,)),
    ("100.100.100.200", (NEVER,)),
    ("192.0.0.192", (NEVER,)),
    ("168.63.129.16", (NEVER,)),
    ("fd00:ec2::254", (NEVER,)),
    ("fd00:ec2::23", (NEVER,)),
    ("fd20:ce::254", (NEVER,)),
    # IPv6 Special-Purpose Address Registry
    ("::", (NEVER,)),
    ("::1", (LOOPBACK,)),
    ("::8.8.8.8", (NEVER,)),
    ("::ffff:8.8.8.8", (PUBLIC,)),
    ("::ffff:127.0.0.1", (LOOPBACK,)),
    ("::ffff:10.1.2.3", (PRIVATE,)),
    ("::ffff:169.254.169.254", (NEVER,)),
    ("64:ff9b::8.8.8.8", (PUBLIC,)),
    ("64:ff9b::192.168.1.1", (PRIVATE,)),
    ("64:ff9b::169.254.169.254", (NEVER,)),
    ("64:ff9b:1::8.8.8.8", (PRIVATE, PUBLIC)),
    ("64:ff9b:1:a9fe:a9:fe00::", (PRIVATE, NEVER)),  # /48 placement of 169.254.169.254
    ("100::1", (NEVER,)),
    ("100::ffff:ffff:ffff:ffff", (NEVER,)),
    ("2001:5::1", (NEVER,)),
    ("2001:1ff:ffff::1", (NEVER,)),
    ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", (PUBLIC,)),  # Teredo, client 8.8.8.8
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", (NEVER,)),  # Teredo, client 192.0.2.45
    ("2001:1::1", (PRIVATE,)),
    ("2001:1::2", (PRIVATE,)),
    ("2001:1::3", (PRIVATE,)),
    ("2001:2::1", (NEVER,)),
    ("2001:3::1", (PUBLIC,)),
    ("2001:4:112::1", (PUBLIC,)),
    ("2001:10::1", (NEVER,)),
    ("2001:20::1", (PUBLIC,)),
    ("2001:30::1", (PUBLIC,)),
    ("2001:db8::1", (NEVER,)),
    ("2001:db8:ffff::1", (NEVER,)),
    ("2002:808:808::1", (PUBLIC,)),
    ("2002:7f00:1::1", (LOOPBACK,)),
    ("2002:a9fe:a9fe::1", (NEVER,)),
    ("2620:4f:8000::1", (PUBLIC,)),
    ("3fff::1", (NEVER,)),
    ("3fff:fff:ffff::1", (NEVER,)),
    ("5f00::1", (NEVER,)),
    ("fc00::1", (PRIVATE,)),
    ("fdff:ffff::1", (PRIVATE,)),
    ("fe80::1", (NEVER,)),
    ("febf::1", (NEVER,)),
    ("fec0::1", (NEVER,)),
    ("ff02::1", (NEVER,)),
    ("ff0e::1", (NEVER,)),
    # IPv6 Address Space: only 2000::/3 is global unicast
    ("2606:4700:4700::1111", (PUBLIC,)),
    ("2a00:1450:4001::1", (PUBLIC,)),
    ("1::1", (NEVER,)),
    ("4000::1", (NEVER,)),
    ("e000::1", (NEVER,)),
]


def refused(policy: TargetPolicy, reaches: tuple[Reach, ...]) -> bool:
    return not all(policy.allows(reach) for reach in reaches)


def test_the_table_covers_every_row_of_the_registry() -> None:
    covered = {most_specific_range(ipaddress.ip_address(address)) for address, _ in TABLE}
    missing = [f"{row.network} {row.name}" for row in REGISTRY if row not in covered]
    assert missing == []


@pytest.mark.parametrize("policy_name", POLICIES)
@pytest.mark.parametrize(("address", "reaches"), TABLE, ids=[a for a, _ in TABLE])
def test_policy_over_the_registries(
    policy_name: str, address: str, reaches: tuple[Reach, ...]
) -> None:
    policy = POLICIES[policy_name]
    url = parse_webhook_url(f"http://{_bracketed(address)}:8080/hook")
    assert url.address == ipaddress.ip_address(address)
    reason = policy.refusal(url.address)
    assert (reason is not None) == refused(policy, reaches), reason
    if reason is not None:
        with pytest.raises(RefusedTarget, match=r"never use it|policy refuses"):
            policy.check_address(url.address)


# --- every spelling of an IPv4 address --------------------------------------------------

PUBLIC_V4 = ipaddress.IPv4Address("65.54.227.120")
PUBLIC_CLIENT = ipaddress.IPv4Address("8.8.8.8")


def _v6(value: int) -> str:
    return f"[{ipaddress.IPv6Address(value)}]"


def _teredo(server: ipaddress.IPv4Address, client: ipaddress.IPv4Address) -> str:
    value = (0x2001_0000 << 96) | (int(server) << 64) | (0x8000_63BF << 32)
    return _v6(value | (~int(client) & 0xFFFFFFFF))


def _short(a: ipaddress.IPv4Address, parts: int) -> str:
    octets = a.packed
    head = [str(o) for o in octets[: parts - 1]]
    return ".".join([*head, str(int.from_bytes(octets[parts - 1 :], "big"))])


# spelling -> (host for the URL, what it adds to the address's own reach)
Spelling = Callable[[ipaddress.IPv4Address], str]
SAME_AS_IPV4: dict[str, Spelling] = {
    "dotted": str,
    "decimal": lambda a: str(int(a)),
    "hex": lambda a: hex(int(a)),
    "HEX": lambda a: f"0X{int(a):X}",
    "octal": lambda a: ".".join(f"0{o:o}" for o in a.packed),
    "hex-parts": lambda a: ".".join(hex(o) for o in a.packed),
    "short-a.b.c": lambda a: _short(a, 3),
    "short-a.b": lambda a: _short(a, 2),
    "mixed": lambda a: f"{a.packed[0]}.0x{a.packed[1]:x}.0{a.packed[2]:o}.{a.packed[3]}",
    "ipv4-mapped": lambda a: f"[::ffff:{a}]",
    "ipv4-mapped-hex": lambda a: _v6(0xFFFF << 32 | int(a)),
    "nat64": lambda a: f"[64:ff9b::{a}]",
    "6to4": lambda a: _v6(0x2002 << 112 | int(a) << 80 | 1),
    "teredo-client": lambda a: _teredo(PUBLIC_V4, a),
    "teredo-server": lambda a: _teredo(a, PUBLIC_CLIENT),
}
IPV4_SAMPLES = [
    (ipaddress.IPv4Address(address), reaches)
    for address, reaches in TABLE
    if ipaddress.ip_address(address).version == 4
]


@pytest.mark.parametrize("policy_name", POLICIES)
@pytest.mark.parametrize(
    ("address", "reaches"), IPV4_SAMPLES, ids=[str(a) for a, _ in IPV4_SAMPLES]
)
def test_every_spelling_of_an_ipv4_address_is_judged_by_that_address(
    policy_name: str, address: ipaddress.IPv4Address, reaches: tuple[Reach, ...]
) -> None:
    policy = POLICIES[policy_name]
    expected = refused(policy, reaches)
    wrong = []
    for name, spell in SAME_AS_IPV4.items():
        url = parse_webhook_url(f"http://{spell(address)}/hook")
        assert url.address is not None, name
        if (policy.refusal(url.address) is not None) != expected:
            wrong.append(f"{name}: {spell(address)}")
    assert wrong == [], f"{address} should be {'refused' if expected else 'allowed'}"


@pytest.mark.parametrize("policy_name", POLICIES)
@pytest.mark.parametrize(
    ("address", "reaches"), IPV4_SAMPLES, ids=[str(a) for a, _ in IPV4_SAMPLES]
)
def test_ipv4_carried_in_deprecated_or_local_forms(
    policy_name: str, address: ipaddress.IPv4Address, reaches: tuple[Reach, ...]
) -> None:
    policy = POLICIES[policy_name]
    # IPv4-compatible addresses are deprecated: refused whatever they carry.
    compatible = parse_webhook_url(f"http://{_v6(int(address) or 2)}/").address
    assert compatible is not None and policy.refusal(compatible) is not None
    # Local-use NAT64 is a private range, and every placement the address could use is judged:
    # at least as strict as the IPv4 address itself.
    for prefix_length in (48, 56, 64, 96):
        local = ipaddress.IPv6Address(_rfc6052(address, prefix_length))
        if refused(policy, (*reaches, PRIVATE)):
            assert policy.refusal(local) is not None, (prefix_length, local)


def _rfc6052(address: ipaddress.IPv4Address, prefix_length: int) -> int:
    prefix = bytes.fromhex("0064ff9b0001")  # 64:ff9b:1::/48
    v4 = address.packed
    if prefix_length == 96:
        octets = prefix + bytes(6) + v4
    else:
        before_u = (prefix_length - 48) // 8  # operator bytes after the /48
        split = 8 - 6 - before_u  # IPv4 bytes before the reserved octet 8
        octets = prefix + bytes(before_u) + v4[:split] + b"\0" + v4[split:]
        octets += bytes(16 - len(octets))
    return int.from_bytes(octets, "big")


# --- host names and URLs ----------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "1.2.3.4.5",
        "256.0.0.1",
        "1.256.0.1",
        "1.2.65536",
        "1.16777216",
        "4294967296",
        "0x100000000",
        "08.0.0.1",
        "1.2.3.09",
        "example.1",
        "a.0x10",
        "0x1.0x2.0x3.0x4.0x5",
    ],
)
def test_hosts_that_end_in_a_number_but_are_no_address_are_refused_as_ambiguous(
    host: str,
) -> None:
    with pytest.raises(RefusedTarget, match="ambiguous"):
        parse_webhook_url(f"http://{host}/hook")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("0x", "0.0.0.0"),
        ("0", "0.0.0.0"),
        ("0x7f.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0x7F000001", "127.0.0.1"),
        ("127.0.0.1", "127.0.0.1"),
        ("10.0x10.010", "10.16.0.8"),
    ],
)
def test_numeric_hosts_are_read_as_inet_aton_reads_them(host: str, expected: str) -> None:
    url = parse_webhook_url(f"http://{host}/hook")
    assert url.address == ipaddress.IPv4Address(expected) and url.host == expected


@pytest.mark.parametrize(
    "host",
    ["example.com", "1.2.3.4.nip.io", "0x1g.example", "xn--bcher-kva.de", "under_score.example"],
)
def test_names_stay_names(host: str) -> None:
    url = parse_webhook_url(f"https://{host.upper()}/x?y=1")
    assert (url.host, url.address, url.port) == (host, None, 443)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://a\x00b.example/", "control character U\\+0000"),
        ("http://example.com/\x00", "control character U\\+0000"),
        ("http://example.com/a\x7f", "DEL"),
        ("http://exam\tple.com/", "control character U\\+0009"),
        ("http://example.com/a\r\nX: y", "control character U\\+000D"),
        ("http://example.com/a b", "a space"),
        (" http://example.com/", "a space"),
        ("http://bücher.de/", "non-ASCII character U\\+00FC"),
        ("http://example.com/\u202egnp.exe", "non-ASCII character U\\+202E"),
        ("http://example.com/\ufeff", "non-ASCII character U\\+FEFF"),
        ("http://\uff45xample.com/", "non-ASCII character U\\+FF45"),
        ("http://a..b.example/", "empty label"),
        ("http://.example.com/", "empty label"),
        ("http://example.com./", "empty label"),
        (f"http://{'a' * 64}.example/", "longer than 63"),
        (f"http://{'a.' * 126}aa/", "longer than 253"),
        ("http://exa%6dple.com/", "may only hold"),
        ("http://exa!mple.com/", "may only hold"),
        ("http://evil.example\\@127.0.0.1/", "backslash"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://@example.com/", "credentials"),
        ("ftp://example.com/", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("javascript:alert(1)", "http or https"),
        ("http:///x", "no host"),
        ("http://example.com:0/", "between 1 and 65535"),
        ("http://example.com:65536/", "not valid"),
        ("http://example.com:8o/", "not valid"),
        ("http://[v1.x]/", "not an IPv6 address"),
        ("http://[fe80::1%25eth0]/", "zone"),
        ("http://[127.0.0.1]/", "not valid"),
        ("http://[::1]junk/", "not valid"),
        ("http://[::1/", "not valid"),
        ("http://example.com/" + "a" * 2000, "longer than 2000"),
    ],
)
def test_malformed_urls_are_refused_with_a_reason(url: str, why: str) -> None:
    with pytest.raises(RefusedTarget, match=why):
        parse_webhook_url(url)


@pytest.mark.parametrize(
    ("url", "host_header", "path"),
    [
        ("http://[::1]:8080/x", "[::1]:8080", "/x"),
        ("https://[2001:DB8::1]/x", "[2001:db8::1]", "/x"),
        ("http://[::ffff:127.0.0.1]:81/", "[::ffff:7f00:1]:81", "/"),
        ("http://2130706433:80/", "127.0.0.1", "/"),
        ("https://Example.COM:443", "example.com", "/"),
        ("http://example.com:8080/a{b}?q=|#frag", "example.com:8080", "/a%7Bb%7D?q=%7C"),
    ],
)
def test_host_header_and_request_target(url: str, host_header: str, path: str) -> None:
    parsed = parse_webhook_url(url)
    assert (parsed.host_header, parsed.path_and_query) == (host_header, path)


# --- property-based ---------------------------------------------------------------------


def _check_parsed(url: WebhookUrl) -> None:
    assert url.scheme in ("http", "https")
    assert 1 <= url.port <= 65535
    assert url.host and url.host.isascii() and url.host == url.host.lower()
    assert url.path_and_query.startswith("/") and url.path_and_query.isascii()
    assert all(0x20 < ord(char) < 0x7F for char in url.path_and_query)
    if url.address is not None:
        assert url.host == str(url.address)
        for policy in POLICIES.values():
            assert isinstance(policy.refusal(url.address), str | None)


def _parse_or_refuse(raw: str) -> None:
    try:
        url = parse_webhook_url(raw)
    except RefusedTarget:
        return
    _check_parsed(url)


@settings(max_examples=500)
@given(st.text())
def test_any_text_parses_or_is_refused(raw: str) -> None:
    _parse_or_refuse(raw)


HOST_PIECES = st.one_of(
    st.text(alphabet="0123456789abcdefxX.-_:[]%@\\ ", max_size=40),
    st.ip_addresses().map(lambda a: f"[{a}]" if a.version == 6 else str(a)),
    st.integers(min_value=0, max_value=2**40).map(str),
    st.integers(min_value=0, max_value=2**40).map(hex),
    st.lists(st.integers(min_value=0, max_value=70000), min_size=1, max_size=5).map(
        lambda parts: ".".join(map(str, parts))
    ),
    st.text(max_size=20),
)


@settings(max_examples=1000)
@given(
    scheme=st.sampled_from(["http", "https", "HTTP", "ftp", ""]),
    host=HOST_PIECES,
    port=st.one_of(st.none(), st.integers(min_value=-1, max_value=70000).map(str), st.text()),
    path=st.text(max_size=30),
)
def test_url_shaped_text_parses_or_is_refused(
    scheme: str, host: str, port: str | None, path: str
) -> None:
    authority = host if port is None else f"{host}:{port}"
    _parse_or_refuse(f"{scheme}://{authority}/{path}")


@given(st.ip_addresses())
def test_the_policy_judges_every_address_and_stricter_refuses_more(address: IPAddress) -> None:
    refused_by = {name: policy.refusal(address) is not None for name, policy in POLICIES.items()}
    assert refused_by["strict"] >= refused_by["loopback-only"] >= refused_by["permissive"]
    assert refused_by["strict"] >= refused_by["private-only"] >= refused_by["permissive"]


@given(st.ip_addresses(v=4))
def test_an_ipv4_address_and_its_mapped_form_are_one_verdict(
    address: ipaddress.IPv4Address,
) -> None:
    mapped = ipaddress.IPv6Address(0xFFFF << 32 | int(address))
    decimal = parse_webhook_url(f"http://{int(address)}/").address
    assert decimal == address
    for policy in POLICIES.values():
        verdict = policy.refusal(address) is None
        assert (policy.refusal(mapped) is None) == verdict
        six_to_four = ipaddress.IPv6Address(0x2002 << 112 | int(address) << 80 | 1)
        assert (policy.refusal(six_to_four) is None) == verdict


def _bracketed(address: str) -> str:
    return f"[{address}]" if ":" in address else address
