"""The outbound guard: internal addresses refused in every disguise, redirects checked, the resolved
address pinned. The `http` executor uses it; tests/test_notifications.py checks webhooks do too."""

from __future__ import annotations

import socket

import pytest

from cloudseam_site import outbound
from cloudseam_site.outbound import Policy, Refused
from stacks.runtime.executors import TaskContext, run_task
from tests.listener import Listener

LOCAL = Policy.parse(["127.0.0.1"])

# Every one of these reaches this machine or the cloud's metadata service; all must be refused.
INTERNAL_URLS = [
    "http://127.0.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://0x7f000001/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://127.1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[fd00:ec2::254]/",
    "http://localhost/",
    "http://10.1.2.3/",
    "http://192.168.0.1/",
    "http://0.0.0.0/",
    "http://224.0.0.1/",
]


@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_it_refuses_internal_addresses_in_every_form(url):
    with pytest.raises(Refused) as refused:
        outbound.request("GET", url, policy=Policy(), timeout=2)
    assert "CLOUDSEAM_OUTBOUND_ALLOW" in refused.value.message or "is a number" in refused.value.message


def test_it_names_what_is_wrong_with_the_address():
    with pytest.raises(Refused, match="a cloud metadata address"):
        outbound.request("GET", "http://169.254.169.254/", policy=Policy())
    with pytest.raises(Refused, match="'localhost' resolves to 127.0.0.1, which is a loopback address"):
        outbound.request("GET", "http://localhost/", policy=Policy())
    with pytest.raises(Refused, match="IPv4-mapped form of 127.0.0.1"):
        outbound.request("GET", "http://[::ffff:127.0.0.1]/", policy=Policy())
    with pytest.raises(Refused, match="is a number"):
        outbound.request("GET", "http://0x7f000001/", policy=Policy())


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://example.com/", "ftp://example.com/", "http:///x",
                                 "http://user:pw@example.com/"])
def test_it_refuses_urls_that_are_not_plain_http(url):
    with pytest.raises(Refused):
        outbound.request("GET", url, policy=Policy())


def test_it_reaches_an_allow_listed_address_and_pins_the_resolved_one(monkeypatch):
    calls = []
    real = socket.getaddrinfo

    def fake_dns(host, port, *args, **kwargs):
        calls.append(host)
        return real("127.0.0.1", port, *args, **kwargs) if host == "hooks.example.test" else real(host, port)

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    with Listener() as listener:
        response = outbound.request("POST", f"http://hooks.example.test:{listener.port}/in", body=b"{}",
                                    policy=LOCAL, timeout=5)
    assert response.status == 200 and response.body == b"ok"
    # The name is resolved once; the connection is made to that address (a literal needs no DNS).
    assert calls == ["hooks.example.test", "127.0.0.1"]
    assert listener.received[0]["headers"]["Host"] == f"hooks.example.test:{listener.port}"


def test_it_allows_a_host_name_from_the_allow_list():
    with Listener() as listener:
        response = outbound.request("GET", f"http://localhost:{listener.port}/", policy=Policy.parse(["localhost"]))
    assert response.status == 200


def test_it_refuses_a_redirect_to_an_internal_address():
    for target in ("http://127.0.0.2:9/", "http://169.254.169.254/latest/", "http://[::1]/"):
        with Listener([(307, {"Location": target}, b"")]) as listener, pytest.raises(Refused):
            outbound.request("POST", listener.url("/hop"), body=b"{}", policy=LOCAL)
        assert len(listener.received) == 1


def test_it_follows_at_most_five_redirects():
    with Listener([(302, {"Location": "/again"}, b"")]) as listener, pytest.raises(Refused, match="more than 5"):
        outbound.request("GET", listener.url("/start"), policy=LOCAL)
    assert len(listener.received) == 6


def test_it_follows_a_307_with_the_same_method_and_body_but_does_not_turn_a_post_into_a_get():
    with Listener([(307, {"Location": "/there"}, b""), (200, {}, b"done")]) as listener:
        response = outbound.request("POST", listener.url("/here"), body=b'{"a":1}', policy=LOCAL)
    assert response.status == 200 and [r["method"] for r in listener.received] == ["POST", "POST"]
    assert listener.received[1]["body"] == b'{"a":1}' and response.redirects == [listener.url("/here")]
    with Listener([(302, {"Location": "/there"}, b"")]) as listener:
        response = outbound.request("POST", listener.url("/here"), body=b"{}", policy=LOCAL)
    assert response.status == 302 and len(listener.received) == 1


def test_it_reads_at_most_the_size_cap():
    with Listener([(200, {}, b"x" * 100_000)]) as listener:
        response = outbound.request("GET", listener.url(), policy=LOCAL, max_bytes=1000)
    assert len(response.body) == 1000 and response.truncated


def test_it_refuses_bad_allow_list_entries():
    with pytest.raises(ValueError):
        Policy.parse(["0x7f000001"])
    assert Policy.parse(["10.0.0.0/8", "[::1]", "hooks.internal"]).allows_address(outbound._literal("10.2.3.4"))


# --- the http executor uses the same guard --------------------------------------------------------


def http_task(url: str) -> TaskContext:
    return TaskContext(task_id="t-1", task_name="call", executor="http", config={"url": url},
                       stack={"id": "s", "metadata": {}}, timeout=5)


@pytest.mark.parametrize("url", ["http://127.0.0.1/", "http://169.254.169.254/latest/meta-data/",
                                 "http://0x7f000001/", "http://[::1]/", "http://localhost/"])
def test_it_makes_the_http_executor_refuse_internal_addresses(settings, url):
    settings.CLOUDSEAM_OUTBOUND_ALLOW = ()
    result = run_task(http_task(url))
    assert result.ok is False and result.error.startswith(f"POST {url} refused: ")


def test_it_makes_the_http_executor_refuse_a_redirect_to_loopback(settings):
    settings.CLOUDSEAM_OUTBOUND_ALLOW = ("127.0.0.1",)
    with Listener([(307, {"Location": "http://127.0.0.2:9/"}, b"")]) as listener:
        result = run_task(http_task(listener.url("/hop")))
    assert result.ok is False and "refused: " in result.error and "127.0.0.2" in result.error
