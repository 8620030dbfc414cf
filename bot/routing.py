"""Handlers are declared once per module and built into a fresh aiogram Router per Dispatcher
(a Router can belong to one Dispatcher only; tests and restarts build several)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiogram import F, Router

# A text that is not a command (what a prompt waits for, what a capture reads).
PLAIN = F.text & ~F.text.startswith("/")


class Routes:
    def __init__(self, name: str):
        self.name = name
        self._handlers: list[tuple[str, Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []

    def _add(self, observer: str, *filters: Any, **kwargs: Any) -> Callable[..., Any]:
        def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
            self._handlers.append((observer, fn, filters, kwargs))
            return fn

        return decorator

    def message(self, *filters: Any, **kwargs: Any) -> Callable[..., Any]:
        return self._add("message", *filters, **kwargs)

    def callback_query(self, *filters: Any, **kwargs: Any) -> Callable[..., Any]:
        return self._add("callback_query", *filters, **kwargs)

    def errors(self, *filters: Any, **kwargs: Any) -> Callable[..., Any]:
        return self._add("errors", *filters, **kwargs)

    def build(self) -> Router:
        router = Router(name=self.name)
        # decorators stack bottom-up; register in source order
        for observer, fn, filters, kwargs in self._handlers:
            getattr(router, observer).register(fn, *filters, **kwargs)
        return router
