"""Fixtures shared by the adapter tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from ryu.lib import hub


@pytest.fixture
def make_app() -> Iterator[Callable[..., Any]]:
    """``make_app(options, **kwargs)``: a NatApp with ``[nat]`` set to ``options``; bugs re-raise.

    Its timer thread is killed and the options cleared afterwards.
    """
    from ryu_nat import app as app_module

    made: list[tuple[Any, Mapping[str, str]]] = []

    def make(options: Mapping[str, str], **kwargs: Any) -> Any:
        for name, value in options.items():
            app_module.CONF.set_override(name, value, group="nat")
        nat_app = app_module.NatApp(**kwargs)
        nat_app.reraise = True
        made.append((nat_app, options))
        return nat_app

    try:
        yield make
    finally:
        for nat_app, options in made:
            for thread in nat_app.threads:
                hub.kill(thread)
            for name in options:
                app_module.CONF.clear_override(name, group="nat")
