"""Target states from relations: the rules that decide what a mutation means.

Theory of operation, after asyncmachine-go's default resolver:

1. Start from the states to set: for ``add`` the called states followed by
   the active ones, for ``remove`` the active ones minus the called, for
   ``set`` the called ones.
2. Expand ``add`` relations (transitively) of states that are not already
   active, unless the state is multi. A ``remove`` mutation never re-adds a
   state it was called to remove.
3. Drop every state whose ``require`` is missing, until nothing changes.
4. Walk the list from its end (active states first, then called ones) and
   drop each state removed by another listed state that is not itself
   dropped; so called states win over active ones.
5. Drop what the survivors ``remove``, expand ``add`` again, drop unmet
   ``require`` again, and sort: required states before the states that
   require them, then the ``after`` relation, then schema order.

Everything is precomputed per schema in :class:`Resolver`, so a transition
costs a few set operations when the schema has few relations.

No recursion, and nothing quadratic in the length of a relation chain:
schemas arrive from untrusted peers too (``RemoteMachine``), and a 10,000-long
``require`` chain must build and resolve like a short one. Graph walks use
explicit stacks, and unmet requirements spread along ``required_by`` once
instead of being re-checked until nothing changes.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator

from ._schema import State


class Resolver:
    """Relation tables of one schema, and the target-state computation."""

    __slots__ = (
        "adds",
        "after",
        "auto_states",
        "free",
        "multi",
        "multi_adders",
        "plain",
        "rank",
        "removed_by",
        "removes",
        "required_by",
        "requires",
        "trivial",
        "unrequired",
    )

    def __init__(self, schema: dict[str, State]) -> None:
        names = list(schema)
        self.requires = {n: s.require for n, s in schema.items() if s.require}
        self.adds = {n: s.add for n, s in schema.items() if s.add}
        self.removes = {n: frozenset(s.remove) for n, s in schema.items() if s.remove}
        self.after = {n: frozenset(s.after) for n, s in schema.items() if s.after}
        self.multi = frozenset(n for n, s in schema.items() if s.multi)
        self.auto_states = tuple(n for n, s in schema.items() if s.auto)
        removed_by: dict[str, list[str]] = {}
        for name, state in schema.items():
            for target in state.remove:
                removed_by.setdefault(target, []).append(name)
        self.removed_by = {k: frozenset(v) for k, v in removed_by.items()}
        required_by: dict[str, list[str]] = {}
        for name, reqs in self.requires.items():
            for target in reqs:
                required_by.setdefault(target, []).append(name)
        self.required_by = {k: tuple(v) for k, v in required_by.items()}
        self.rank = self._require_order(names)
        self.trivial = not (self.requires or self.adds or self.removes)
        # states whose activation can change nothing else: no add or remove
        # relations of their own (requirements and removers are checked live)
        self.plain = frozenset(
            n for n, spec in schema.items() if not spec.add and not spec.remove
        )
        self.multi_adders = frozenset(n for n in self.multi if n in self.adds)
        # with no active multi adder: adding one of these changes only itself
        # (no relations at all, nobody removes it), removing one of these
        # only itself (nobody requires it)
        self.free = frozenset(
            n for n in self.plain if n not in self.requires and n not in self.removed_by
        )
        self.unrequired = frozenset(n for n in names if n not in self.required_by)

    def _require_order(self, names: list[str]) -> dict[str, int]:
        """Rank the states in require and after relations: what comes first first.

        A state comes after the states it requires and the states it runs
        after. States in neither relation are not ranked: sorting keeps them
        first, in the order the resolution produced (called states first), as
        asyncmachine-go does. Cycles keep schema order.

        A depth-first walk with an explicit stack (predecessors in schema
        order), so a chain of any length ranks without recursion.
        """
        position = {name: i for i, name in enumerate(names)}
        before: dict[str, list[str]] = {}
        for name, reqs in self.requires.items():
            before.setdefault(name, []).extend(reqs)
        for name, afters in self.after.items():
            before.setdefault(name, []).extend(afters)
        in_graph = set(before)
        for preds in before.values():
            in_graph.update(preds)

        def preds_of(name: str) -> Iterator[str]:
            return iter(sorted(before.get(name, ()), key=position.__getitem__))

        order: list[str] = []
        seen: set[str] = set()
        visiting: set[str] = set()
        for root in names:
            if root not in in_graph or root in seen:
                continue
            visiting.add(root)
            stack = [(root, preds_of(root))]
            while stack:
                name, remaining = stack[-1]
                for pred in remaining:
                    if pred not in seen and pred not in visiting:
                        visiting.add(pred)
                        stack.append((pred, preds_of(pred)))
                        break
                else:  # every predecessor placed: place this one
                    stack.pop()
                    visiting.discard(name)
                    seen.add(name)
                    order.append(name)
        return {name: i for i, name in enumerate(order)}

    def _unmet(self, states: list[str], met: Container[str] | None = None) -> set[str]:
        """The states of ``states`` whose requirements can't all be met.

        A requirement is met by a state of ``met`` (already active) or by
        another of ``states`` that is not itself unmet. The states missing a
        requirement outright are found in one pass; the states requiring
        them, transitively, follow along ``required_by``: linear in the
        states and relations involved, however long a chain.
        """
        requires, required_by = self.requires, self.required_by
        listed = set(states)
        if met is None:
            met = ()
        unmet = {
            s
            for s in states
            if s in requires
            and any(r not in listed and r not in met for r in requires[s])
        }
        if not unmet:
            return unmet
        pending = [s for s in unmet if s not in met]
        while pending:
            for dependant in required_by.get(pending.pop(), ()):
                if dependant in listed and dependant not in unmet:
                    unmet.add(dependant)
                    if dependant not in met:
                        pending.append(dependant)
        return unmet

    # -- target states -----------------------------------------------------

    def expand_adds(
        self, states: list[str], active: Iterable[str], not_readded: Iterable[str]
    ) -> list[str]:
        """``states`` plus what their ``add`` relations bring, transitively."""
        adds = self.adds
        if not adds:
            return states
        active_set = set(active)
        blocked = set(not_readded)
        result = list(states)
        present = set(result)
        expanded: set[str] = set()
        i = 0
        while i < len(result):
            name = result[i]
            i += 1
            if name in expanded or (name in active_set and name not in self.multi):
                continue
            expanded.add(name)
            for added in adds.get(name, ()):
                if added in blocked or added in present:
                    continue
                present.add(added)
                result.append(added)
        return result

    def drop_unmet_requires(self, states: list[str]) -> list[str]:
        """Remove states whose requirements are not all among ``states``."""
        if not self.requires:
            return states
        unmet = self._unmet(states)
        if not unmet:
            return states
        return [s for s in states if s not in unmet]

    def target_states(
        self,
        to_set: list[str],
        active: Iterable[str],
        removing: Iterable[str] = (),
    ) -> list[str]:
        """The states a transition ends with, sorted for handler order."""
        if self.trivial:
            return self.sort(list(dict.fromkeys(to_set)))
        active = tuple(active)
        states = list(dict.fromkeys(self.expand_adds(to_set, active, removing)))
        states = self.drop_unmet_requires(states)

        if self.removes:
            present = set(states)
            blocked: set[str] = set()
            survivors: list[str] = []
            removed_by = self.removed_by
            for name in reversed(states):
                blockers = removed_by.get(name)
                # walk the smaller side: a state of a big exclusive group has
                # many removers, of which few are present
                if blockers and (
                    any(b in blockers and b not in blocked for b in present)
                    if len(present) < len(blockers)
                    else any(b in present and b not in blocked for b in blockers)
                ):
                    blocked.add(name)
                else:
                    survivors.append(name)
            survivors.reverse()
            removes = self.removes
            removers = [removes[n] for n in survivors if n in removes]
            expanded = list(
                dict.fromkeys(self.expand_adds(survivors, active, removing))
            )
            if sum(map(len, removers)) <= len(expanded) * len(removers):
                dropped: set[str] = set().union(*removers)
                states = [s for s in expanded if s not in dropped]
            else:  # few states against long remove lists: ask each state
                states = [s for s in expanded if not any(s in r for r in removers)]
            states = self.drop_unmet_requires(states)

        return self.sort(states)

    def simple_add(
        self, called: tuple[str, ...], ticks: list[int], index: dict[str, int]
    ) -> bool:
        """True when adding ``called`` needs no resolution: the targets are
        simply the active states plus the called ones.

        That holds when the called states add and remove nothing, are
        removed by no active state, find their requirements active, and no
        active multi state would add more. The active set is consistent
        after every transition, so nothing else can change. Activity is read
        from the clock (``ticks``, odd = active), in constant time.
        """
        if self.multi_adders and any(ticks[index[a]] & 1 for a in self.multi_adders):
            return False
        plain, requires, removed_by = self.plain, self.requires, self.removed_by
        # membership in a long tuple would make a long call quadratic
        in_called: Container[str] = called if len(called) < 9 else frozenset(called)
        for state in called:
            if state not in plain:
                return False
            for req in requires.get(state, ()):
                if not ticks[index[req]] & 1 and req not in in_called:
                    return False
            for remover in removed_by.get(state, ()):
                if ticks[index[remover]] & 1 or remover in in_called:
                    return False
        return True

    def simple_remove_exits(
        self, called: tuple[str, ...], ticks: list[int], index: dict[str, int]
    ) -> list[str] | None:
        """The states a ``remove`` of ``called`` deactivates, found by deltas.

        With consistent active states, removing some takes away exactly the
        active states requiring them, transitively: a walk along
        ``required_by`` from the removed ones, linear in what leaves. None
        when an active multi state adds others (it re-adds on every
        mutation), which needs the full resolution. Sorted for handler
        order: schema order, then :meth:`sort`.
        """
        if self.multi_adders and any(ticks[index[a]] & 1 for a in self.multi_adders):
            return None
        if len(called) == 1:  # no comprehension: a frame of its own
            gone = [called[0]] if ticks[index[called[0]]] & 1 else []
        else:
            gone = [s for s in called if ticks[index[s]] & 1]
        if not gone:
            return gone
        required_by = self.required_by
        if required_by:
            seen = set(gone)
            pending = list(gone)
            while pending:
                for dependant in required_by.get(pending.pop(), ()):
                    if ticks[index[dependant]] & 1 and dependant not in seen:
                        seen.add(dependant)
                        gone.append(dependant)
                        pending.append(dependant)
        if len(gone) > 1:
            gone.sort(key=index.__getitem__)
            return self.sort(gone)
        return gone

    def sort(self, states: list[str]) -> list[str]:
        """Handler order: required and after-ed states first (one stable sort)."""
        if len(states) < 2 or not self.rank:
            return states
        rank = self.rank
        return sorted(states, key=lambda s: rank.get(s, -1))

    def auto_candidates(self, active: Container[str]) -> list[str]:
        """Inactive auto states that no active state removes.

        A candidate whose requirements can't be met (neither active nor
        another candidate) is left out, so a hopeless auto pass isn't queued.
        ``active`` answers ``in`` in constant time.
        """
        candidates = []
        removed_by = self.removed_by
        for name in self.auto_states:
            if name in active:
                continue
            blockers = removed_by.get(name, ())
            if any(b in active for b in blockers):
                continue
            candidates.append(name)
        if not candidates or not self.requires:
            return candidates
        unmet = self._unmet(candidates, active)
        if not unmet:
            return candidates
        return [c for c in candidates if c not in unmet]


class ActiveView:
    """``in`` on a clock: active means an odd tick. No copy, constant time."""

    __slots__ = ("_index", "_ticks")

    def __init__(self, ticks: list[int], index: dict[str, int]) -> None:
        self._ticks = ticks
        self._index = index

    def __contains__(self, name: object) -> bool:
        i = self._index.get(name)  # type: ignore[call-overload]
        return i is not None and bool(self._ticks[i] & 1)
