"""Binding: handler objects and tracers, turned into lookup tables.

Why this module exists: binding is where handler names meet the schema.
``bind`` collects an object's methods named after states (``Foo_enter``,
``Foo_state``, ``Foo_Bar``, ``any_enter``...) and refuses names that look
like a typo of one; the tables built from all bindings (``_handlers``,
``_pair_handlers``, ``_negotiators``) and from all tracers (``_trace``) are
what a transition reads. Nothing here runs a handler: ``transition.py`` does.

Rule: a table is built aside, under the lock, and then assigned, never
edited in place, so a transition running in another thread never sees a
half-built one.
"""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Callable
from typing import Any

from ._errors import HandlerError
from ._fields import Handler, MachineFields, did_you_mean

HANDLER_SUFFIXES = ("enter", "exit", "state", "end")
GLOBAL_HANDLERS = ("any_enter", "any_state")
#: tracer methods called for each handler (see ``Transition._call_watched``)
HANDLER_TRACES = ("handler_start", "handler_end", "handler_timeout")
TRACER_METHODS = (
    "transition_init",
    "transition_start",
    "transition_finals",
    "transition_end",
    "mutation_queued",
    "queue_end",
    "machine_dispose",
    "schema_change",
    "new_submachine",
    "verify_states",
    *HANDLER_TRACES,
)


class Binding(MachineFields):
    """bind / unbind handler objects, bind_tracer / unbind_tracer."""

    def bind(self, handlers: object) -> str:
        """Bind every method of ``handlers`` named after states; returns an id.

        A method that looks like a handler of a state missing from the schema
        (``Fooo_enter``, ``Foo_Barr``) raises ``HandlerError``.
        """
        found: dict[str, Handler] = {}
        for attr in dir(handlers):
            if attr.startswith("_"):
                continue
            kind = self._handler_kind(attr)
            if kind is None:
                continue
            method = getattr(handlers, attr, None)
            if not callable(method):
                continue
            if kind != "ok":
                raise HandlerError(
                    f"{type(handlers).__name__}.{attr} looks like a handler, "
                    f"but {kind} (machine {self._id!r})"
                )
            found[attr] = method
        binding_id = uuid.uuid4().hex[:12]
        with self._lock:
            self._bindings[binding_id] = found
            self._rebuild_handlers()
        return binding_id

    def unbind(self, binding_id: str) -> None:
        with self._lock:
            if self._bindings.pop(binding_id, None) is None:
                raise KeyError(f"no handlers bound with id {binding_id!r}")
            self._rebuild_handlers()

    def _rebuild_handlers(self) -> None:
        table: dict[str, list[Handler]] = {}
        emitters: dict[str, list[str]] = {}
        for binding_id, found in self._bindings.items():
            for name, method in found.items():
                table.setdefault(name, []).append(method)
                emitters.setdefault(name, []).append(binding_id)
        pairs: dict[tuple[str, str], str] = {}
        for name in table:
            pair = self._pair_of(name)
            if pair is not None:
                pairs[pair] = name
        self._emitters = emitters
        self._handlers = table
        self._pair_handlers = pairs
        self._self_handlers = tuple(
            s for s in self._names if self._handler_names[s][4] in table
        )
        finals = ("_state", "_end")
        self._negotiators = any(
            not name.endswith(finals) or name in self._pair_handlers.values()
            for name in table
            if name != "any_state"
        )

    def _pair_of(self, name: str) -> tuple[str, str] | None:
        for i, char in enumerate(name):
            if char != "_":
                continue
            src, dst = name[:i], name[i + 1 :]
            if src in self._index and dst in self._index and src != dst:
                return (src, dst)
        return None

    def _handler_kind(self, attr: str) -> str | None:
        """ "ok" for a handler name, an explanation for a likely typo, else None."""
        if attr in GLOBAL_HANDLERS:
            return "ok"
        index = self._index
        typo: str | None = None
        for i, char in enumerate(attr):
            if char != "_" or i == 0:
                continue
            prefix, suffix = attr[:i], attr[i + 1 :]
            if prefix in index:
                if suffix in HANDLER_SUFFIXES or suffix in index:
                    return "ok"
                if suffix[:1].isupper():
                    typo = f"state {suffix!r} is not in the schema" + did_you_mean(
                        suffix, self._names, f"{prefix}_"
                    )
                elif difflib.get_close_matches(suffix, HANDLER_SUFFIXES, n=1):
                    typo = f"{suffix!r} is not a handler kind" + did_you_mean(
                        suffix, HANDLER_SUFFIXES, f"{prefix}_"
                    )
            elif prefix == "any" and suffix in HANDLER_SUFFIXES:
                typo = "only any_enter and any_state exist" + did_you_mean(
                    attr, GLOBAL_HANDLERS, ""
                )
            elif prefix[:1].isupper() and (
                suffix in HANDLER_SUFFIXES or suffix in index
            ):
                typo = f"state {prefix!r} is not in the schema" + did_you_mean(
                    prefix, self._names, "", f"_{suffix}"
                )
        return typo

    def bind_tracer(self, tracer: object) -> None:
        """Call the tracer's methods (see TRACER_METHODS) synchronously."""
        with self._lock:
            if tracer not in self._tracers:
                self._tracers.append(tracer)
            self._rebuild_tracers()

    def unbind_tracer(self, tracer: object) -> None:
        with self._lock:
            try:
                self._tracers.remove(tracer)
            except ValueError:
                raise KeyError(f"tracer {tracer!r} is not bound") from None
            self._rebuild_tracers()

    def _rebuild_tracers(self) -> None:
        trace: dict[str, list[Callable[..., Any]]] = {}
        for tracer in self._tracers:
            for method in TRACER_METHODS:
                fn = getattr(tracer, method, None)
                if fn is not None:
                    trace.setdefault(method, []).append(fn)
        self._trace = trace
        self._watch_handlers = self._handler_timeout is not None or any(
            name in trace for name in HANDLER_TRACES
        )
