"""service/webhooks/addresses.py without a name server: the strict URL parser, which
addresses are public, and the policy with a resolver given to it as a function."""

from __future__ import annotations

import ipaddress
import re
import threading
from dataclasses import replace

import pytest

from service.webhooks.addresses import CallbackPolicy, CallbackRefused, CallbackTarget, is_public, parse_callback_url


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("http://Example.COM", CallbackTarget("http", "example.com", 80, "/")),
        ("https://example.com./hooks?a=1&b=2", CallbackTarget("https", "example.com", 443, "/hooks?a=1&b=2")),
        ("http://example.com:8080/x#frag", CallbackTarget("http", "example.com", 8080, "/x")),
        ("https://203.0.113.9:1/", CallbackTarget("https", "203.0.113.9", 1, "/")),
        ("http://[2001:DB8:0:0::1]:65535/p", CallbackTarget("http", "2001:db8::1", 65535, "/p")),
        ("HTTPS://my_host.example/", CallbackTarget("https", "my_host.example", 443, "/")),
        ("http://ß.example/", CallbackTarget("http", "xn--zca.example", 80, "/")),  # IDNA 2008, not "ss"
        ("http://Bücher.example/", CallbackTarget("http", "xn--bcher-kva.example", 80, "/")),
    ],
)
def test_a_url_is_parsed_into_one_target(url, target):
    assert parse_callback_url(url) == target


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:9\\@public.example/", "backslashes"),
        ("http://example.com/a b", "spaces"),
        ("http://example.com/\x00", "control characters"),
        ("http://example.com/\t", "control characters"),
        ("ftp://example.com/", "http(s) URL with a host"),
        ("file:///etc/passwd", "http(s) URL with a host"),
        ("//example.com/", "http(s) URL with a host"),
        ("http:///x", "http(s) URL with a host"),
        ("http://user@example.com/", "user name or password"),
        ("http://u:p@example.com/", "user name or password"),
        ("http://[::1/", "not a valid URL"),
        ("http://[::1]x/", "no valid host and port"),
        ("http://example.com:/", "no valid host and port"),
        ("http://example.com:123456/", "no valid host and port"),  # more than 5 digits
        ("http://example.com:0/", "between 1 and 65535"),
        ("http://example.com:65536/", "between 1 and 65535"),
        ("http://[fe80::1%25eth0]/", "no valid host and port"),  # a zone id
        ("http://[::ffff:zz]/", "not a valid URL"),  # urlsplit checks the brackets' address
        ("http://%31%32%37.0.0.1/", "not a valid host name"),  # percent-encoded: parsers disagree
        ("http://-leading.example/", "not a valid host name"),
        ("http://a..b/", "not a valid host name"),
        ("http://" + "a" * 64 + ".example/", "not a valid host name"),  # a label over 63
        ("http://" + ".".join(["abcdefghi"] * 26) + "/", "not a valid host name"),  # over 253
        ("http://a\u200db.example/", "internationalised"),  # a zero-width joiner: not IDNA 2008
    ],
)
def test_an_ambiguous_or_malformed_url_is_refused_with_a_reason(url, why):
    with pytest.raises(CallbackRefused, match=re.escape(why)):
        parse_callback_url(url)


def test_the_host_header_names_the_port_only_when_not_the_default():
    assert parse_callback_url("http://example.com:80/").authority == "example.com"
    assert parse_callback_url("https://example.com:80/").authority == "example.com:80"
    assert parse_callback_url("https://[2001:db8::1]/").authority == "[2001:db8::1]"
    assert parse_callback_url("https://Bücher.example./x").authority == "xn--bcher-kva.example"
    assert parse_callback_url("http://[2001:db8::1]:8080/").authority == "[2001:db8::1]:8080"


def test_an_ip_literal_is_known_as_one_and_a_name_is_not():
    assert parse_callback_url("http://[2001:db8::1]/").ip_literal == ipaddress.ip_address("2001:db8::1")
    assert parse_callback_url("http://8.8.8.8/").ip_literal == ipaddress.ip_address("8.8.8.8")
    assert parse_callback_url("http://dns.example/").ip_literal is None


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"],
)
def test_public_addresses(address):
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
        "255.255.255.255", "224.0.0.1", "239.255.255.250", "192.0.0.8", "192.88.99.1", "198.18.0.1",
        "::1", "::", "fe80::1", "fc00::1", "fec0::1", "ff0e::1", "2001:db8::1",
        "::ffff:127.0.0.1", "::ffff:169.254.169.254",  # IPv4-mapped
        "64:ff9b::7f00:1", "64:ff9b::a00:1",  # NAT64 of internal IPv4
        "2002:808:808::1",  # 6to4, even of a public address
        "3fff::1", "5f00::1",  # documentation and SRv6 SIDs, which Python 3.11 calls global
    ],
)  # fmt: skip
def test_internal_addresses(address):
    assert not is_public(ipaddress.ip_address(address))


def test_the_allow_list_reads_networks_addresses_and_names():
    policy = CallbackPolicy.parse(" 10.1.0.0/16, 192.168.1.7 ,, fd00::/8, Receiver.Internal., ")
    assert policy.allowed_networks == tuple(
        ipaddress.ip_network(n) for n in ("10.1.0.0/16", "192.168.1.7/32", "fd00::/8")
    )
    assert policy.allowed_hosts == frozenset({"receiver.internal"})
    assert CallbackPolicy.parse("10.1.2.3/16").allowed_networks == (ipaddress.ip_network("10.1.0.0/16"),)
    assert CallbackPolicy.parse("") == CallbackPolicy()
    with pytest.raises(CallbackRefused):
        CallbackPolicy.parse("not a host!")


def resolving(answers: dict[str, list[str]], allow: str = "") -> CallbackPolicy:
    return replace(CallbackPolicy.parse(allow), resolver=lambda host, port: answers[host])


def test_an_allowed_network_admits_an_internal_address_and_nothing_else():
    policy = resolving({"a.test": ["10.1.2.3"], "b.test": ["10.1.2.3", "10.2.0.1"], "receiver.internal": ["10.9.9.9"]},
                       allow="10.1.0.0/16, receiver.internal")  # fmt: skip
    assert [str(a) for a in policy.admit(parse_callback_url("http://a.test/"))] == ["10.1.2.3"]
    assert [str(a) for a in policy.admit(parse_callback_url("http://RECEIVER.internal./"))] == ["10.9.9.9"]
    with pytest.raises(CallbackRefused, match="internal address"):
        policy.admit(parse_callback_url("http://b.test/"))  # one answer of two outside the list


def test_every_answer_is_checked_and_the_admitted_are_deduplicated_and_ordered():
    answers = {"mixed.test": ["8.8.8.8", "2606:4700::1", "1.1.1.1", "8.8.8.8"], "bad.test": ["8.8.8.8", "::1"]}
    policy = resolving(answers)
    admitted = policy.admit(parse_callback_url("https://mixed.test/"))
    assert [str(a) for a in admitted] == ["1.1.1.1", "8.8.8.8", "2606:4700::1"]
    with pytest.raises(CallbackRefused, match="internal address"):
        policy.admit(parse_callback_url("https://bad.test/"))


def test_an_allowed_network_also_admits_the_ipv4_mapped_form_of_its_addresses():
    policy = resolving({"mapped.test": ["::ffff:10.1.2.3"]}, allow="10.1.0.0/16")
    assert [str(a) for a in policy.admit(parse_callback_url("http://mapped.test/"))] == ["::ffff:a01:203"]
    assert [str(a) for a in policy.admit(parse_callback_url("http://[::ffff:10.1.2.3]/"))] == ["::ffff:a01:203"]


def test_an_ip_literal_is_checked_without_asking_the_resolver():
    def no_lookups(host: str, port: int) -> list[str]:
        raise AssertionError(f"asked to resolve {host}")

    policy = replace(CallbackPolicy(), resolver=no_lookups)
    assert [str(a) for a in policy.admit(parse_callback_url("http://8.8.8.8/"))] == ["8.8.8.8"]
    with pytest.raises(CallbackRefused, match="internal address"):
        policy.admit(parse_callback_url("http://[::1]:8080/"))


@pytest.mark.parametrize(
    ("answer", "why"),
    [(OSError("no such name"), "does not resolve"), ([], "does not resolve"), (["not-an-address"], "does not resolve"),
     (["fe80::1%eth0"], "internal address")],  # the scope is dropped; the address alone decides
    ids=["error", "empty", "garbage", "scoped-link-local"],
)  # fmt: skip
def test_a_name_that_resolves_to_nothing_usable_is_refused(answer, why):
    def resolver(host: str, port: int) -> list[str]:
        if isinstance(answer, Exception):
            raise answer
        return answer

    policy = replace(CallbackPolicy(), resolver=resolver)
    with pytest.raises(CallbackRefused, match=why):
        policy.admit(parse_callback_url("http://nowhere.test/"))


def test_many_targets_resolve_each_host_once_and_each_gets_its_own_verdict():
    asked: list[tuple[str, int]] = []
    answers = {"good.test": ["8.8.8.8"], "bad.test": ["10.0.0.1"]}

    def resolver(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return answers[host]

    policy = replace(CallbackPolicy(), resolver=resolver)
    good_a, good_b, bad = (
        parse_callback_url(u) for u in ("http://good.test/a", "http://good.test/b", "http://bad.test/")
    )
    verdicts = policy.admit_all([good_a, good_b, bad, good_a])
    assert sorted(asked) == [("bad.test", 80), ("good.test", 80)]
    assert [str(a) for a in verdicts[good_a]] == [str(a) for a in verdicts[good_b]] == ["8.8.8.8"]
    assert isinstance(verdicts[bad], CallbackRefused)


def test_a_name_server_that_never_answers_is_refused_at_the_deadline():
    never = threading.Event()
    policy = CallbackPolicy(resolve_timeout_s=0.1, resolver=lambda host, port: never.wait() and [])
    try:
        with pytest.raises(CallbackRefused, match="did not resolve in time"):
            policy.admit(parse_callback_url("https://hang.test/"))
    finally:
        never.set()
