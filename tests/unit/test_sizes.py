"""The package stays readable in parts: no module over about 400 lines, no class over about 250, no
function over about 50 ("about": 10 % more fails).

A function may be longer if its docstring says why, in a sentence with the
word "long" (issue 10's rule; STYLE.md: when a class passes ~250 lines, it is
usually two parts).
"""

from __future__ import annotations

import ast
import pathlib

import ryu_nat

PACKAGE = pathlib.Path(ryu_nat.__file__).parent
MAX_MODULE_LINES = 440
MAX_CLASS_LINES = 275
MAX_FUNCTION_LINES = 55


def _sources() -> list[pathlib.Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_is_over_about_400_lines():
    long_modules = {str(path.relative_to(PACKAGE)): n for path in _sources()
                    if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long_modules == {}


def test_no_class_over_about_250_lines_and_no_function_over_about_50_unless_its_docstring_says_why():
    too_long = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            assert node.end_lineno is not None
            length = node.end_lineno - node.lineno + 1
            if isinstance(node, ast.ClassDef):
                if length > MAX_CLASS_LINES:
                    too_long.append(f"class {path.name}:{node.name} ({length} lines)")
            elif length > MAX_FUNCTION_LINES and "long" not in (ast.get_docstring(node) or "").lower():
                too_long.append(f"function {path.name}:{node.name} ({length} lines)")
    assert too_long == []


def test_the_limits_see_the_package():
    assert len(_sources()) > 30 and (PACKAGE / "gateway" / "dispatcher.py") in _sources()
