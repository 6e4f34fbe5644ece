"""The request guard in front of the API: what a page in the operator's browser, a rebound DNS name or
a stranger without the token tries, refused before any route runs, and nothing changed."""

from __future__ import annotations

import base64
import json
import logging

import pytest

from ryu_nat.operator import guard

from .lab import H2
from .restlab import Api

TOKEN = "s3cret-token-0123456789"
REDIRECT = {"protocol": "tcp", "public_port": 9090, "private": {"ip": H2, "port": 80}}
DASHBOARD = "http://dash.example:3000"


@pytest.fixture
def api() -> Api:
    return Api()


def redirected(api: Api) -> bool:
    return any(r["public_port"] == 9090 for r in api.get("/nat/redirects")["redirects"])


# --- requests that change state take JSON only -----------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
def test_a_redirect_sent_as_a_simple_cross_site_request_is_refused(api, content_type):
    message = api.error("POST", "/nat/redirects", 415, "unsupported_media_type", REDIRECT, content_type=content_type)
    assert message.startswith("POST takes Content-Type: application/json")
    assert not redirected(api)


def test_json_with_parameters_or_in_capitals_is_json(api):
    status, _ = api.call("POST", "/nat/redirects", REDIRECT, content_type="Application/JSON; charset=utf-8")
    assert status == 201 and redirected(api)


def test_a_delete_must_say_json_too(api):
    api.error("DELETE", "/nat/redirects/tcp/8080", 415, "unsupported_media_type", content_type="text/plain")
    assert api.get("/nat/redirects")["redirects"][0]["public_port"] == 8080


def test_reading_needs_no_content_type(api):
    assert api.call("GET", "/nat/stats", content_type=None)[0] == 200


# --- Origin: other pages in the operator's browser ---------------------------------------------------


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://localhost:8081", "https://localhost"])
def test_a_foreign_origin_is_refused_for_changes_and_reads(api, origin):
    message = api.error("POST", "/nat/redirects", 403, "foreign_origin", REDIRECT, headers={"Origin": origin})
    assert message.startswith(f"requests from pages of {origin!r} are not allowed")
    api.error("GET", "/nat/mappings", 403, "foreign_origin", headers={"Origin": origin})
    assert not redirected(api)


def test_the_apis_own_origin_is_welcome_and_gets_no_cors_headers(api):
    response = api.request("POST", "/nat/redirects", REDIRECT, headers={"Origin": "http://localhost:80"})
    assert response.status_int == 201
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]


def test_no_cors_headers_unless_configured(api):
    for method, path in (("GET", "/nat/stats"), ("OPTIONS", "/nat/redirects")):
        response = api.request(method, path, headers={"Origin": DASHBOARD, "Access-Control-Request-Method": "POST"})
        assert response.status_int == 403
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]


def test_a_configured_origin_gets_cors_headers_and_its_preflight_answered():
    api = Api(policy=guard.Policy(cors_origins=frozenset({DASHBOARD}), token=TOKEN))
    preflight = api.request("OPTIONS", "/nat/redirects", headers={"Origin": DASHBOARD,
                                                                   "Access-Control-Request-Method": "POST"})
    assert preflight.status_int == 204
    assert (preflight.headers["Access-Control-Allow-Origin"], preflight.headers["Access-Control-Allow-Headers"]) == (
        DASHBOARD, "Authorization, Content-Type")
    response = api.request("GET", "/nat/stats", headers={"Origin": DASHBOARD, "Authorization": f"Bearer {TOKEN}"})
    assert response.status_int == 200 and response.headers["Access-Control-Allow-Origin"] == DASHBOARD
    assert response.headers["Vary"] == "Origin"


# --- Host: DNS rebinding -------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "localhost.evil.example", "127.0.0.1.nip.io",
                                  "", "[::1", "localhost:http"])
def test_a_host_that_is_not_the_api_is_refused(api, host):
    message = api.error("GET", "/nat/stats", 403, "host_not_allowed", headers={"Host": host})
    assert "is not a name of this API" in message
    api.error("POST", "/nat/redirects", 403, "host_not_allowed", REDIRECT, headers={"Host": host})
    assert not redirected(api)


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:8080", "localhost.", "127.0.0.1:8080", "127.1.2.3",
                                  "[::1]:8080", "nat.example.net:8080", "192.168.3.1"])
def test_loopback_and_configured_names_are_the_api(host):
    api = Api(policy=guard.Policy(hosts=guard.allowed_hosts("192.168.3.1", ["nat.example.net"])))
    assert api.call("GET", "/nat/stats", headers={"Host": host})[0] == 200


def test_the_listening_address_is_allowed_unless_it_is_every_address():
    assert guard.allowed_hosts("10.1.2.3", ["Nat.Example."]) == {"10.1.2.3", "nat.example"}
    assert guard.allowed_hosts("0.0.0.0", []) == frozenset()


# --- the token -----------------------------------------------------------------------------------------------


@pytest.fixture
def locked() -> Api:
    return Api(policy=guard.Policy(token=TOKEN))


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-0123456789", f"Bearer {TOKEN}x", "Bearer",
                                           f"Token {TOKEN}", "Basic !!!", "Basic " + base64.b64encode(b"x").decode()])
def test_without_the_token_every_request_is_refused(locked, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path, body in (("GET", "/nat/mappings", None), ("GET", "/nat/", None), ("GET", "/metrics", None),
                               ("POST", "/nat/redirects", REDIRECT), ("DELETE", "/nat/mappings", None)):
        response = locked.request(method, path, body, headers=headers)
        assert response.status_int == 401 and json.loads(response.body)["error"]["code"] == "unauthorized"
        assert response.headers.getall("WWW-Authenticate") == ['Basic realm="ryu_nat", charset="UTF-8"',
                                                               'Bearer realm="ryu_nat"']
    assert not redirected_with_token(locked)


def redirected_with_token(api: Api) -> bool:
    status, answer = api.call("GET", "/nat/redirects", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    return any(r["public_port"] == 9090 for r in answer["redirects"])


def test_the_token_as_bearer_or_as_a_browsers_basic_password_is_let_through(locked):
    basic = "Basic " + base64.b64encode(f"operator:{TOKEN}".encode()).decode()
    assert locked.call("GET", "/nat/stats", headers={"Authorization": basic})[0] == 200
    status, _ = locked.call("POST", "/nat/redirects", REDIRECT, headers={"Authorization": f"bearer {TOKEN}"})
    assert status == 201 and redirected_with_token(locked)


# --- refusals ---------------------------------------------------------------------------------------------------


def test_refusals_are_one_log_line_with_untrusted_text_cut(api, caplog):
    with caplog.at_level(logging.INFO, logger="ryu_nat.operator.guard"):
        api.call("GET", "/nat/stats", headers={"Host": "h" * 500})
    [record] = caplog.records
    assert record.exc_info is None and len(record.getMessage()) < 300
    assert record.getMessage().startswith("REST GET /nat/stats: 403 host_not_allowed: Host 'hhh")
