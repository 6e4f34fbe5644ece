"""Redirects added through the API outlive a restart in [nat] state_file: written whole or not at all, read
back at start, and a bad file costs one log line and those redirects, never the start."""

from __future__ import annotations

import json
import logging
import os

import pytest

from ryu_nat.config import ConfigError, parse_config
from ryu_nat.core.addresses import Proto
from ryu_nat.operator.statefile import MAX_BYTES, StateFile, check_state_file

from .fakedp import FakeDatapath
from .fakeswitch import connect
from .lab import BASE_CONFIG, H1, H2
from .restlab import Api

CONFIG = parse_config(BASE_CONFIG)  # forwards tcp:8080 and udp:5353
NEW_REDIRECT = {"protocol": "tcp", "public_port": 9090, "private": {"ip": H2, "port": 22}}


def write(path, content) -> None:
    path.write_text(content if isinstance(content, str) else json.dumps(content))


def test_saved_redirects_load_back_and_no_temporary_file_is_left(tmp_path):
    state = StateFile(str(tmp_path / "state.json"))
    rules = [parse_config({**BASE_CONFIG, "redirects": f"tcp:9090={H2}:22, udp:9091={H1}:53"}).redirects]
    state.save(rules[0])
    assert json.loads((tmp_path / "state.json").read_text()) == {
        "version": 1, "redirects": [f"tcp:9090={H2}:22", f"udp:9091={H1}:53"]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    loaded = state.load(CONFIG.private, CONFIG.redirects)
    assert (loaded.redirects, loaded.problems) == (list(rules[0]), [])


def test_no_file_yet_is_no_redirect_and_no_problem(tmp_path):
    loaded = StateFile(str(tmp_path / "state.json")).load(CONFIG.private, CONFIG.redirects)
    assert (loaded.redirects, loaded.problems) == ([], [])


@pytest.mark.parametrize("content, problem", [
    ("{not json", "is not JSON"),
    ({"version": 2, "redirects": []}, "is not a state file of version 1"),
    ({"version": 1, "redirects": "tcp:1=10.0.0.2:1"}, "has no list of redirects"),
    ("[" * 100_000 + "]" * 100_000, "is not JSON"),
    ("x" * (MAX_BYTES + 1), f"is over {MAX_BYTES} bytes"),
])
def test_a_bad_file_is_moved_aside_with_one_line(tmp_path, content, problem):
    path = tmp_path / "state.json"
    write(path, content)
    loaded = StateFile(str(path)).load(CONFIG.private, CONFIG.redirects)
    [line] = loaded.problems
    assert loaded.redirects == [] and problem in line and "moved to" in line and "\n" not in line
    assert not path.exists() and (tmp_path / "state.json.bad").exists()


def test_redirects_the_configuration_no_longer_allows_are_left_out_one_line_each(tmp_path):
    path = tmp_path / "state.json"
    write(path, {"version": 1, "redirects": [f"tcp:8080={H2}:80", "tcp:9090=172.16.0.9:22", f"udp:7000={H2}:53",
                                             f"udp:7000={H1}:53", "nonsense"]})
    loaded = StateFile(str(path)).load(CONFIG.private, CONFIG.redirects)
    assert [str(rule) for rule in loaded.redirects] == [f"udp:7000={H2}:53"]
    assert len(loaded.problems) == 4 and path.exists()
    assert "[nat] redirects or an earlier line forwards tcp port 8080" in loaded.problems[0]


def test_the_api_writes_the_file_before_it_changes_anything(tmp_path):
    path = tmp_path / "state.json"
    api = Api(state=StateFile(str(path)))
    assert api.call("POST", "/nat/redirects", NEW_REDIRECT)[0] == 201
    assert json.loads(path.read_text())["redirects"] == [f"tcp:9090={H2}:22"]
    assert api.call("DELETE", "/nat/redirects/tcp/8080")[0] == 200  # a configured one: not in the file
    assert json.loads(path.read_text())["redirects"] == [f"tcp:9090={H2}:22"]
    os.chmod(tmp_path, 0o500)
    try:
        if os.access(tmp_path, os.W_OK):  # root writes anyway: take the directory away instead
            path.unlink()
            tmp_path.rmdir()
        before = api.get("/nat/redirects")
        message = api.error("DELETE", "/nat/redirects/tcp/9090", 503, "state_not_saved")
        assert "nothing changed" in message and api.get("/nat/redirects") == before
    finally:
        if tmp_path.exists():
            os.chmod(tmp_path, 0o700)


def test_the_controller_starts_with_the_redirects_of_the_file_and_one_line_per_problem(make_app, tmp_path, caplog):
    path = tmp_path / "state.json"
    write(path, {"version": 1, "redirects": [f"tcp:9090={H2}:22", f"tcp:8080={H2}:80"]})
    with caplog.at_level(logging.INFO):
        app = make_app({**BASE_CONFIG, "state_file": str(path)})
    assert [str(rule) for rule in app.gateway.redirects()] == [f"tcp:8080={H1}:80", f"tcp:9090={H2}:22",
                                                               f"udp:5353={H2}:53"]
    assert sum("left out" in record.message for record in caplog.records) == 1
    connect(app, FakeDatapath())
    assert app.facade.remove_redirect(Proto.TCP, 9090) is not None  # one the file kept: the file forgets it
    assert json.loads(path.read_text())["redirects"] == []


@pytest.mark.parametrize("name, message", [
    ("missing/state.json", "does not exist"),
    (".", "is a directory"),
])
def test_a_state_file_that_could_never_be_written_stops_the_start(tmp_path, name, message):
    with pytest.raises(ConfigError) as error:
        check_state_file(str(tmp_path / name))
    assert message in str(error.value) and "[nat] state_file" in str(error.value)
