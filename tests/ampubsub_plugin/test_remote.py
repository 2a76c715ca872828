"""RemoteMachine: a read-only Machine fed clocks and schemas by the remote views.

No network here: remote machines are built by hand and fed the way
``ampubsub_plugin/_views.py`` feeds them (``_apply_time``, ``_set_schema``,
``_set_connected``), so every check and waiter is the local Machine's.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ampubsub_plugin.remote import RemoteMachine, remote_schema
from asyncmachine import Machine, ReadOnlyError, Relation, State

from .netutil import WORKER

STATES = ["Foo", "Bar", "Baz", "Exception"]
PEER = "12D3KooWRemotePeer"
TIMEOUT = 5.0


def remote(
    time: list[int] | None = None, *, schema: Any = "worker", **kwargs: Any
) -> RemoteMachine:
    if schema == "worker":
        schema = Machine(WORKER).schema
    return RemoteMachine(
        peer_id=PEER,
        index=3,
        id="w1",
        states=STATES,
        schema=schema,
        time=time or [0, 0, 0, 0],
        **kwargs,
    )


# -- identity ------------------------------------------------------------------


def test_a_remote_machine_shows_the_owners_identity_and_clock() -> None:
    r = remote([1, 1, 0, 0], tags=["kind:w"], parent_id="root", schema_hash="h1")
    assert (r.peer_id, r.index, r.id) == (PEER, 3, "w1")
    assert (r.tags, r.parent_id, r.schema_hash) == (["kind:w"], "root", "h1")
    assert r.state_names == STATES
    assert r.time() == [1, 1, 0, 0] and r.time_sum == 2
    assert r.active_states == ["Foo", "Bar"]
    assert r.has_schema and r.is_connected


def test_a_clock_of_the_wrong_length_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="'w1': 4 states but 2 ticks"):
        remote([1, 1])


# -- read-only -----------------------------------------------------------------


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.add("Bar"),
        lambda r: r.remove("Bar"),
        lambda r: r.set("Bar"),
        lambda r: r.toggle("Bar"),
        lambda r: r.add_err(ValueError("boom")),
        lambda r: r.add_err_state("Bar", ValueError("boom")),
        lambda r: r.can_add("Bar"),
        lambda r: r.can_remove("Bar"),
    ],
    ids=[
        "add",
        "remove",
        "set",
        "toggle",
        "add_err",
        "add_err_state",
        "can_add",
        "can_remove",
    ],
)
def test_mutations_raise_read_only_error_naming_the_peer(mutate: Any) -> None:
    r = remote([0, 1, 0, 0])
    with pytest.raises(ReadOnlyError, match=f"'w1' belongs to peer {PEER}"):
        mutate(r)
    assert r.time() == [0, 1, 0, 0]


def test_bind_when_args_and_export_to_raise_read_only_error() -> None:
    r = remote()
    with pytest.raises(ReadOnlyError, match="'w1' runs no handlers"):
        r.bind(object())
    with pytest.raises(ReadOnlyError, match="'w1': mutation args do not travel"):
        r.when_args("Bar", {"x": 1})
    with pytest.raises(ReadOnlyError, match="'w1' can't be exported again"):
        r.export_to(object())


def test_schema_changes_and_eval_raise_read_only_error() -> None:
    """The owner's schema and queue aren't ours to change or run on."""
    r = remote()
    before = r.schema
    with pytest.raises(ReadOnlyError, match="'w1': its schema is its owner's"):
        r.set_schema({"Other": State()})
    with pytest.raises(ReadOnlyError, match="'w1': its groups are its owner's"):
        r.set_groups({"g": ["Foo"]})
    with pytest.raises(ReadOnlyError, match="'w1' has no queue of its own"):
        r.eval(lambda: None)
    assert r.schema == before


# -- clocks ----------------------------------------------------------------------


def test_apply_time_shows_only_clocks_whose_sum_grows() -> None:
    r = remote([1, 0, 0, 0])
    assert not r._apply_time([0, 1, 0, 0])  # equal sum
    assert not r._apply_time([0, 0, 0, 0])  # older
    assert not r._apply_time([5, 5])  # another machine's shape
    assert r.time() == [1, 0, 0, 0] and r.active_states == ["Foo"]
    assert r._apply_time([1, 1, 1, 0])
    assert r.time() == [1, 1, 1, 0] and r.time_sum == 3
    assert r.active_states == ["Foo", "Bar", "Baz"]
    assert not r._apply_time([1, 1, 1, 0])  # idempotent


def test_apply_time_wakes_when_when_not_and_when_ticks_waiters() -> None:
    r = remote([1, 0, 0, 0])
    bar, no_foo = r.when("Bar"), r.when_not("Foo")
    baz_twice, baz_thrice = r.when_ticks("Baz", 2), r.when_ticks("Baz", 3)
    in_thread: list[bool] = []
    blocked = threading.Thread(target=lambda: in_thread.append(bar.wait(TIMEOUT)))
    blocked.start()
    assert not any(w.done for w in (bar, no_foo, baz_twice, baz_thrice))
    r._apply_time([1, 0, 1, 0])  # Baz once: nobody's condition yet
    assert not any(w.done for w in (bar, no_foo, baz_twice, baz_thrice))
    r._apply_time([2, 1, 2, 0])
    blocked.join(TIMEOUT)
    assert in_thread == [True]
    assert bar.result and no_foo.result and baz_twice.result
    assert not baz_thrice.done


def test_apply_time_expires_the_contexts_of_changed_states_only() -> None:
    r = remote([0, 1, 0, 0])
    bar, baz = r.new_state_ctx("Bar"), r.new_state_ctx("Baz")
    expired: list[str] = []
    bar.on_expire(lambda: expired.append("Bar"))
    baz.on_expire(lambda: expired.append("Baz"))
    assert not r._apply_time([0, 1, 0, 0])
    assert not bar.expired and expired == []
    r._apply_time([0, 2, 0, 0])
    assert bar.expired and not baz.expired
    assert expired == ["Bar"]


def test_a_disposed_remote_ignores_clocks_and_releases_waiters() -> None:
    r = remote()
    waiter = r.when("Bar")
    r.dispose()
    assert waiter.done and not waiter.result
    assert not r._apply_time([0, 1, 0, 0])
    assert r.time() == [0, 0, 0, 0]
    assert not r.when("Foo").result


# -- schema and connection ---------------------------------------------------------


def test_set_schema_after_a_hash_only_start_changes_relations() -> None:
    r = remote([0, 1, 0, 0], schema=None, schema_hash="h1")
    assert not r.has_schema
    assert r.relations_of("Foo") == []
    r._set_schema(Machine(WORKER).schema, "h2")
    assert r.has_schema and r.schema_hash == "h2"
    assert r.relations_of("Foo") == [Relation.REQUIRE]
    assert r.relations_between("Foo", "Bar") == [Relation.REQUIRE]
    assert r.time() == [0, 1, 0, 0]  # the clock stays
    r._set_schema(Machine(WORKER).schema, None)
    assert r.schema_hash == "h2"  # no hash given: the known one stays


def test_is_connected_follows_set_connected_until_disposed() -> None:
    r = remote()
    r._set_connected(False)
    assert not r.is_connected and "disconnected" in repr(r)
    r._set_connected(True)
    assert r.is_connected and "disconnected" not in repr(r)
    r.dispose()
    assert not r.is_connected
    r._set_connected(True)
    assert not r.is_connected


def test_remote_schema_drops_relations_to_absent_states() -> None:
    schema = {
        "Foo": State(
            require=["Bar", "Gone"],
            add=["Exception", "Gone"],
            remove=["Foo", "Gone", "Exception"],
            after=["Foo", "Exception"],
            auto=True,
            tags=["t"],
        ),
        "Unlisted": State(add=["Foo"]),
    }
    shown = remote_schema(["Exception", "Foo", "Bar"], schema)
    assert list(shown) == ["Exception", "Foo", "Bar"]  # the owner's state order
    assert shown["Foo"] == State(
        require=["Bar"],
        add=["Exception"],
        remove=["Exception"],  # never itself
        after=["Exception"],
        auto=True,
        tags=["t"],
    )
    assert shown["Exception"] == State() and shown["Bar"] == State()
    assert remote_schema(["A"], None) == {"A": State()}
