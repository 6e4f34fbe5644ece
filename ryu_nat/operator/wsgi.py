"""Routing for the REST API: the ``@route`` marks of a controller's methods, dispatched by :class:`Router`.

Our own, so the API runs the same on Ryu and on os-ken (which dropped
``ryu.app.wsgi``). Requests and responses are webob's. No I/O here:
:mod:`ryu_nat.operator.server` serves the WSGI app that :class:`Router` is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import webob
import webob.dec

_PARAMETER = re.compile(r"\{(\w+)\}")

HandlerT = TypeVar("HandlerT", bound=Callable[..., Any])
# (the request, the methods the path allows elsewhere) -> the answer for a request no route takes
NotRouted = Callable[[webob.Request, list[str]], webob.Response]


class Response(webob.Response):  # type: ignore[misc]
    """webob's Response with UTF-8 declared for every type, JSON included (as Ryu's was)."""

    def __init__(self, *args: Any, charset: str = "UTF-8", **kwargs: Any) -> None:
        super().__init__(*args, charset=charset, **kwargs)


def route(name: str, path: str, methods: list[str]) -> Callable[[HandlerT], HandlerT]:
    """Make a controller method the handler of ``methods`` on ``path``; ``{name}`` matches one path segment.

    The handler is called as ``handler(request, **segments)``.
    """

    def mark(handler: HandlerT) -> HandlerT:
        handler.routing = (name, path, tuple(methods))  # type: ignore[attr-defined]
        return handler

    return mark


@dataclass(frozen=True)
class _Route:
    name: str
    pattern: re.Pattern[str]
    methods: tuple[str, ...]
    handler: Callable[..., webob.Response]


def _compile(path: str) -> re.Pattern[str]:
    parts = _PARAMETER.split(path)  # literal, name, literal, name, ..., literal
    return re.compile("".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)"
                              for i, part in enumerate(parts)))


def routes_of(controller_class: type) -> list[tuple[str, str, tuple[str, ...], str]]:
    """(name, path, methods, attribute) of each routed method of ``controller_class``, in definition order."""
    found = []
    for attribute, function in vars(controller_class).items():
        routing = getattr(function, "routing", None)
        if routing is not None:
            name, path, methods = routing
            found.append((name, path, methods, attribute))
    return found


class Router:
    """A WSGI app: each request goes to the first route whose path and method match, else to ``not_routed``."""

    def __init__(self, controllers: Iterable[object], not_routed: NotRouted) -> None:
        self._routes: list[_Route] = []
        for controller in controllers:
            for name, path, methods, attribute in routes_of(type(controller)):
                self._routes.append(_Route(name, _compile(path), methods, getattr(controller, attribute)))
        self._not_routed = not_routed

    @webob.dec.wsgify  # type: ignore[misc]
    def __call__(self, req: webob.Request) -> webob.Response:
        allowed: list[str] = []
        for candidate in self._routes:
            found = candidate.pattern.fullmatch(req.path_info)
            if found is None:
                continue
            if req.method in candidate.methods:
                return candidate.handler(req, **found.groupdict())
            allowed += [method for method in candidate.methods if method not in allowed]
        return self._not_routed(req, allowed)
