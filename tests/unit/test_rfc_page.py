"""docs/rfc.md: every requirement has a row, and every test a row names exists.

A row's evidence is pytest node ids in backquotes (``tests/unit/test_x.py::test_y``),
checked here by parsing the test file (a function of that name must be defined
in it), or "not applicable" / "not met" with a reason.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "rfc.md"
NODE_ID = re.compile(r"`(tests/(?:unit|e2e)/test_\w+\.py)::(\w+)`")

EXPECTED: dict[str, list[str]] = {
    "RFC 4787": ["REQ-1", "REQ-2", "REQ-3", "REQ-3a", "REQ-4", "REQ-5", "REQ-5a", "REQ-5b", "REQ-5c", "REQ-6",
                 "REQ-6a", "REQ-7", "REQ-8", "REQ-9", "REQ-9a", "REQ-10", "REQ-10a", "REQ-11", "REQ-12",
                 "REQ-12a", "REQ-12b", "REQ-13", "REQ-13a", "REQ-14", "REQ-14a"],
    "RFC 5382": ["REQ-1", "REQ-2", "REQ-2a", "REQ-3", "REQ-3a", "REQ-3b", "REQ-4", "REQ-4a", "REQ-5", "REQ-5a",
                 "REQ-6", "REQ-7", "REQ-8", "REQ-8a", "REQ-9", "REQ-10"],
    "RFC 5508": ["REQ-1", "REQ-1a", "REQ-2", "REQ-2a", "REQ-3", "REQ-3a", "REQ-3b", "REQ-3c", "REQ-3d", "REQ-4",
                 "REQ-5", "REQ-5c", "REQ-6", "REQ-7", "REQ-7a", "REQ-8", "REQ-9", "REQ-10 (fragmentation needed)",
                 "REQ-10 (time exceeded)", "REQ-10 (no error about an error)",
                 "REQ-10 (destination unreachable from others)", "REQ-10 (parameter problem)",
                 "REQ-10 (source quench, redirect)", "REQ-11"],
    "RFC 7857": ["2.1 TCP session tracking", "2.1 transitory timeout", "2.2 TCP RST", "3 port overlapping",
                 "4 address pooling paired", "5 EIM protocol independence", "6 EIF protocol independence",
                 "7 EIF mapping refresh", "7.1 outbound refresh and error packets", "8 port parity",
                 "9 port randomization", "10 IP identification", "11 ICMP query mapping timeout",
                 "12 hairpinning for ICMP"],
    "RFC 6888": [f"REQ-{n}" for n in range(1, 15)],
}


def rows() -> dict[tuple[str, str], list[str]]:
    """(RFC, requirement) -> the row's cells, for every table row of the page."""
    found: dict[tuple[str, str], list[str]] = {}
    section = None
    for line in PAGE.read_text().splitlines():
        heading = re.match(r"^## (RFC \d+)", line)
        if heading:
            section = heading.group(1)
            continue
        if section is None or not line.startswith("| ") or line.startswith(("| Req ", "| ---")):
            continue
        cells = [cell.strip() for cell in line.strip()[1:-1].split("|")]
        assert len(cells) == 5, f"{section}: a row needs 5 cells: {line}"
        key = (section, cells[0])
        assert key not in found, f"{section} {cells[0]} has two rows"
        found[key] = cells
    return found


@functools.cache
def defined_tests(path: str) -> frozenset[str]:
    tree = ast.parse((REPO / path).read_text())
    return frozenset(node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef))


def test_every_requirement_has_one_row_and_no_row_is_unknown():
    assert sorted(rows()) == sorted((rfc, req) for rfc, reqs in EXPECTED.items() for req in reqs)


@pytest.mark.parametrize("key", sorted((rfc, req) for rfc, reqs in EXPECTED.items() for req in reqs),
                         ids=lambda key: f"{key[0]} {key[1]}")
def test_each_row_says_what_proves_it(key):
    _, level, does, _, evidence = rows()[key]
    assert level and does, f"{key}: level and what ryu_nat does"
    named = NODE_ID.findall(evidence)
    missing = [f"{path}::{name}" for path, name in named
               if not (REPO / path).is_file() or name not in defined_tests(path)]
    assert missing == [], f"{key} names tests that do not exist"
    reasoned = re.match(r"^not (applicable|met)( \(MAY\))?: \S", evidence) is not None
    assert named or reasoned, f"{key}: no test, and no 'not applicable' / 'not met' with a reason"


def test_the_checker_catches_a_test_that_does_not_exist():
    assert NODE_ID.findall("`tests/unit/test_nat.py::test_no_such_thing`") == [("tests/unit/test_nat.py",
                                                                             "test_no_such_thing")]
    assert "test_no_such_thing" not in defined_tests("tests/unit/test_nat.py")
    assert "test_quarantine_ends_after_120_s" in defined_tests("tests/unit/test_nat.py")


def test_the_readme_links_the_page():
    assert "(docs/rfc.md)" in (REPO / "README.md").read_text()
