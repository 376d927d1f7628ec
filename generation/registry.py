"""Backend registries: one per pipeline stage, mapping a backend name to a factory.

Owns: `Registry` (register a factory under a name, build and cache the backend object per
process so model weights load once, list what is available). Each stage module creates its
own registry and registers its `builtin` backend; a later backend (diffusers, transformers)
only has to `@REGISTRY.register("diffusers")` a factory in its own module and be imported by
`generation.stages.load_backends`.
Does not own: which backend a run uses (`generation.config.GenerationConfig.backends`) or the
stage maths.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Generic, TypeVar

from engine.errors import UserError

T = TypeVar("T")


class UnknownBackendError(UserError, ValueError):
    """A stage was asked for a backend nobody registered."""


class Registry(Generic[T]):
    """name -> factory(options) for one stage; `get` builds lazily and caches per options."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._factories: dict[str, Callable[..., T]] = {}
        self._cache: dict[tuple[str, tuple], T] = {}
        self._lock = threading.Lock()

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.stage}: backend {name!r} registered twice")
            self._factories[name] = factory
            return factory
        return deco

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._factories))

    def factory(self, name: str) -> Callable[..., T]:
        """The factory registered as `name` (its `OPTIONS` / `MODEL_KEYS`, if it declares them,
        are what a config file may set for it)."""
        if name not in self._factories:
            known = ", ".join(self.names()) or "none"
            raise UnknownBackendError(f"{self.stage}: unknown backend {name!r} (known: {known})")
        return self._factories[name]

    def get(self, name: str, **options: Any) -> T:
        """The backend `name` built with `options` (hashable values); built once per process."""
        if name not in self._factories:
            known = ", ".join(self.names()) or "none"
            raise UnknownBackendError(f"{self.stage}: unknown backend {name!r} (known: {known})")
        key = (name, tuple(sorted(options.items())))
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self._factories[name](**options)
            return self._cache[key]

    def clear(self) -> None:
        """Drop cached backends (tests; frees model memory)."""
        with self._lock:
            self._cache.clear()
