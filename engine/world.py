"""The `World`: entities with dataclass components, resources, and deferred commands.

Owns: entity ids, component storage and queries (esper-style `world.query(A, B)`), the scene
graph links (`Parent`/`Children`), resources (one object per type, e.g. the chunk store and the
LoD index), and the command queue whose structural changes (spawn, despawn, insert, remove)
are applied at one point of the frame by `apply_commands()`.
Does not own: what the components mean (`engine.scene` builds levels and chunks from history)
or any I/O. No module globals: every piece of state lives in a World instance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

Entity = int
T = TypeVar("T")


@dataclass
class Parent:
    entity: Entity


@dataclass
class Children:
    entities: list[Entity] = field(default_factory=list)


class Commands:
    """Structural changes recorded during a frame and applied by `World.apply_commands`."""

    def __init__(self, world: "World") -> None:
        self._world = world
        self._ops: list[Callable[[], Any]] = []

    def __len__(self) -> int:
        return len(self._ops)

    def spawn(self, *components: Any, parent: Entity | None = None) -> Entity:
        """Reserve an entity id now; it gets its components when commands are applied."""
        entity = self._world._reserve()
        self._ops.append(lambda: self._world._materialise(entity, components, parent))
        return entity

    def despawn(self, entity: Entity) -> None:
        self._ops.append(lambda: self._world.despawn(entity))

    def insert(self, entity: Entity, *components: Any) -> None:
        self._ops.append(lambda: self._world.insert(entity, *components))

    def remove(self, entity: Entity, component_type: type) -> None:
        self._ops.append(lambda: self._world.remove(entity, component_type))

    def run(self, fn: Callable[["World"], Any]) -> None:
        """Any other deferred change (e.g. a hot-load touching resources)."""
        self._ops.append(lambda: fn(self._world))

    def _drain(self) -> list[Callable[[], Any]]:
        ops, self._ops = self._ops, []
        return ops


class World:
    def __init__(self) -> None:
        self._next_entity = 0
        self._alive: set[Entity] = set()
        self._components: dict[type, dict[Entity, Any]] = {}
        self._resources: dict[type, Any] = {}
        self.commands = Commands(self)
        self.changes = 0  # applied command batches so far (the frame's change detection)

    # ---- entities -----------------------------------------------------------------------
    def _reserve(self) -> Entity:
        entity = self._next_entity
        self._next_entity += 1
        return entity

    def _materialise(self, entity: Entity, components: tuple[Any, ...], parent: Entity | None) -> None:
        self._alive.add(entity)
        self.insert(entity, *components)
        if parent is not None:
            self.set_parent(entity, parent)

    def spawn(self, *components: Any, parent: Entity | None = None) -> Entity:
        """Immediate spawn: for building a world outside the frame (loading, tests)."""
        entity = self._reserve()
        self._materialise(entity, components, parent)
        return entity

    def despawn(self, entity: Entity) -> None:
        """Remove an entity, its components and, recursively, its children."""
        if entity not in self._alive:
            return
        kids = self.try_get(entity, Children)
        for child in list(kids.entities if kids else []):
            self.despawn(child)
        parent = self.try_get(entity, Parent)
        if parent is not None:
            siblings = self.try_get(parent.entity, Children)
            if siblings is not None and entity in siblings.entities:
                siblings.entities.remove(entity)
        for store in self._components.values():
            store.pop(entity, None)
        self._alive.discard(entity)

    def is_alive(self, entity: Entity) -> bool:
        return entity in self._alive

    def __len__(self) -> int:
        return len(self._alive)

    # ---- components ---------------------------------------------------------------------
    def insert(self, entity: Entity, *components: Any) -> None:
        if entity not in self._alive:
            raise KeyError(f"entity {entity} does not exist")
        for component in components:
            self._components.setdefault(type(component), {})[entity] = component

    def remove(self, entity: Entity, component_type: type) -> None:
        self._components.get(component_type, {}).pop(entity, None)

    def get(self, entity: Entity, component_type: type[T]) -> T:
        try:
            return self._components[component_type][entity]
        except KeyError:
            raise KeyError(f"entity {entity} has no {component_type.__name__}") from None

    def try_get(self, entity: Entity, component_type: type[T]) -> T | None:
        return self._components.get(component_type, {}).get(entity)

    def has(self, entity: Entity, component_type: type) -> bool:
        return entity in self._components.get(component_type, {})

    def query(self, *component_types: type) -> Iterator[tuple[Entity, tuple[Any, ...]]]:
        """Entities having all the given components, in creation order."""
        if not component_types:
            return iter(())
        stores = [self._components.get(t, {}) for t in component_types]
        smallest = min(stores, key=len)
        hits = sorted(e for e in smallest if all(e in s for s in stores))
        return iter([(e, tuple(s[e] for s in stores)) for e in hits])

    # ---- scene graph --------------------------------------------------------------------
    def set_parent(self, child: Entity, parent: Entity) -> None:
        old = self.try_get(child, Parent)
        if old is not None:
            kids = self.try_get(old.entity, Children)
            if kids and child in kids.entities:
                kids.entities.remove(child)
        self.insert(child, Parent(parent))
        kids = self.try_get(parent, Children)
        if kids is None:
            kids = Children()
            self.insert(parent, kids)
        kids.entities.append(child)

    def children(self, entity: Entity) -> list[Entity]:
        kids = self.try_get(entity, Children)
        return list(kids.entities) if kids else []

    def parent(self, entity: Entity) -> Entity | None:
        p = self.try_get(entity, Parent)
        return p.entity if p else None

    def descendants(self, entity: Entity) -> list[Entity]:
        out: list[Entity] = []
        stack = self.children(entity)[::-1]
        while stack:
            e = stack.pop()
            out.append(e)
            stack.extend(self.children(e)[::-1])
        return out

    # ---- resources ----------------------------------------------------------------------
    def insert_resource(self, resource: Any) -> None:
        self._resources[type(resource)] = resource

    def resource(self, resource_type: type[T]) -> T:
        try:
            return self._resources[resource_type]
        except KeyError:
            raise KeyError(f"world has no {resource_type.__name__} resource") from None

    def try_resource(self, resource_type: type[T]) -> T | None:
        return self._resources.get(resource_type)

    # ---- frame point --------------------------------------------------------------------
    def apply_commands(self) -> int:
        """Apply queued structural changes in order; returns how many were applied.
        Commands queued while applying run in the same call. Each call that applied any
        counts one in `changes`."""
        applied = 0
        while len(self.commands):
            for op in self.commands._drain():
                op()
                applied += 1
        if applied:
            self.changes += 1
        return applied
