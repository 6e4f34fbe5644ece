"""Fixtures shared by the adapter tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest


@pytest.fixture
def make_app() -> Iterator[Callable[..., Any]]:
    """``make_app(options, **kwargs)``: a NatApp with ``[nat]`` set to ``options``; bugs re-raise.

    It is not started (no event thread, ticker or REST server); the options are cleared afterwards.
    """
    from ryu_nat import app as app_module

    made: list[Mapping[str, str]] = []

    def make(options: Mapping[str, str], **kwargs: Any) -> Any:
        for name, value in options.items():
            app_module.CONF.set_override(name, value, group="nat")
        nat_app = app_module.NatApp(**kwargs)
        nat_app.reraise = True
        made.append(options)
        return nat_app

    try:
        yield make
    finally:
        for options in made:
            for name in options:
                app_module.CONF.clear_override(name, group="nat")
