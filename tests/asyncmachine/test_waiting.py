"""Waiters under plain threads, asyncio and trio; state contexts; disposal.

API.md "Waiting": when(), when_not(), when_time(), when_ticks(), when_args(),
when_err(), when_query(), when_disposed() (and when_queue_end()) return a
waiter that is awaitable under asyncio and trio and blocks in plain threads
with .wait(timeout) -> True, or False on timeout. A waiter whose condition
already holds completes at once. Mutations may come from any thread; waiting
wakes the waiter on its own thread or loop. Disposal releases every pending
waiter: await and .wait() then return False.

No test sleeps to synchronise: a trigger is scheduled with call_soon /
start_soon (so it runs once the awaiting task is suspended) or runs in a
thread, and every blocking wait has a timeout.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
import trio

from asyncmachine import Machine, Result, State, StateError

TIMEOUT = 5


def schema() -> dict[str, State]:
    return {
        "A": State(),
        "B": State(),
        "M": State(multi=True),
    }


async def _await(w: Any) -> Any:
    return await w


# ---------------------------------------------------------------------------
# waiter cases: (make the waiter, trigger that satisfies it)
# prepare() runs first; the waiter must be pending after it.


def _prep_none(m: Machine) -> None:
    pass


def _prep_ab(m: Machine) -> None:
    m.add(["A", "B"])


CASES: dict[
    str,
    tuple[
        Callable[[Machine], None], Callable[[Machine], Any], Callable[[Machine], Any]
    ],
] = {
    "when": (_prep_none, lambda m: m.when(["A", "B"]), lambda m: m.add(["A", "B"])),
    "when_not": (
        _prep_ab,
        lambda m: m.when_not(["A", "B"]),
        lambda m: m.remove(["A", "B"]),
    ),
    "when_time": (
        _prep_none,
        lambda m: m.when_time(["A", "M"], [1, 1]),
        lambda m: m.add(["A", "M"]),
    ),
    "when_ticks": (
        _prep_ab,
        lambda m: m.when_ticks("A", 2),
        lambda m: (m.remove("A"), m.add("A")),
    ),
    "when_args": (
        _prep_none,
        lambda m: m.when_args("M", {"id": 7}),
        lambda m: m.add("M", {"id": 7, "extra": 1}),
    ),
    "when_err": (
        _prep_none,
        lambda m: m.when_err(),
        lambda m: m.add_err(ValueError("expected")),
    ),
    "when_query": (
        _prep_none,
        lambda m: m.when_query(lambda c: c["B"] == 1),
        lambda m: m.add("B"),
    ),
    "when_disposed": (_prep_none, lambda m: m.when_disposed(), lambda m: m.dispose()),
    "state_ctx": (
        _prep_ab,
        lambda m: m.new_state_ctx("A").when_expired(),
        lambda m: m.remove("A"),
    ),
}

# waiters that disposal releases with False (when_disposed completes with True)
PENDING_ON_DISPOSE = [k for k in CASES if k not in ("when_disposed", "state_ctx")]


def make_pending(kind: str) -> tuple[Machine, Any, Callable[[Machine], Any]]:
    prep, make, trigger = CASES[kind]
    m = Machine(schema(), id=f"wait-{kind}")
    prep(m)
    w = make(m)
    assert not w.done, f"{kind}: waiter done before its trigger"
    return m, w, trigger


# ---------------------------------------------------------------------------
# plain threads


@pytest.mark.parametrize("kind", list(CASES))
def test_thread_wait_woken_by_other_thread(kind: str) -> None:
    m, w, trigger = make_pending(kind)
    t = threading.Thread(target=trigger, args=(m,), daemon=True)
    t.start()
    assert w.wait(timeout=TIMEOUT) is True
    t.join(TIMEOUT)
    assert w.done
    # a done waiter keeps answering True
    assert w.wait(timeout=0) is True


@pytest.mark.parametrize("kind", list(CASES))
def test_thread_wait_times_out(kind: str) -> None:
    m, w, trigger = make_pending(kind)
    assert w.wait(timeout=0.05) is False
    assert not w.done
    # still usable after a timeout
    trigger(m)
    assert w.wait(timeout=TIMEOUT) is True


def test_thread_waiters_in_many_threads_all_wake() -> None:
    m = Machine(schema())
    w = m.when("A")
    results: list[bool] = []
    lock = threading.Lock()

    def waiter() -> None:
        r = w.wait(timeout=TIMEOUT)
        own = m.when("A").wait(timeout=TIMEOUT)
        with lock:
            results.append(r and own)

    threads = [threading.Thread(target=waiter, daemon=True) for _ in range(6)]
    for t in threads:
        t.start()
    m.add("A")
    for t in threads:
        t.join(TIMEOUT)
    assert results == [True] * 6


def test_already_holding_conditions_complete_at_once() -> None:
    m = Machine(schema())
    m.add(["A", "M"])
    m.add_err(KeyError("x"))
    checks = {
        "when": m.when(["A", "M"]),
        "when_not": m.when_not("B"),
        "when_time": m.when_time(["A", "M"], [1, 1]),
        "when_ticks0": m.when_ticks("A", 0),
        "when_err": m.when_err(),
        "when_query": m.when_query(lambda c: c["A"] == 1),
        "when_queue_end": m.when_queue_end(),
    }
    for name, w in checks.items():
        assert w.done, f"{name} should complete at once"
        assert w.wait(timeout=0) is True, name

    async def aio() -> list[bool]:
        return [await w for w in checks.values()]

    assert asyncio.run(aio()) == [True] * len(checks)

    async def tr() -> list[bool]:
        with trio.fail_after(TIMEOUT):
            return [await w for w in checks.values()]

    assert trio.run(tr) == [True] * len(checks)


def test_when_requires_all_states() -> None:
    m = Machine(schema())
    w = m.when(["A", "B"])
    m.add("A")
    assert not w.done
    m.add("B")
    assert w.wait(TIMEOUT)


def test_when_not_requires_all_inactive() -> None:
    m = Machine(schema())
    m.add(["A", "B"])
    w = m.when_not(["A", "B"])
    m.remove("A")
    assert not w.done
    m.remove("B")
    assert w.wait(TIMEOUT)


def test_when_time_each_tick_at_least() -> None:
    m = Machine(schema())
    w = m.when_time(["A", "B"], [3, 1])
    m.add(["A", "B"])  # A:1 B:1
    assert not w.done
    m.remove("A")  # A:2
    assert not w.done
    m.add("A")  # A:3
    assert w.wait(TIMEOUT)
    # overshooting also satisfies
    w2 = m.when_time(["M"], [2])
    m.add("M")
    m.add("M")  # M:3 >= 2
    assert w2.wait(TIMEOUT)


def test_when_ticks_is_relative_to_now() -> None:
    m = Machine(schema())
    m.add("M")
    m.add("M")  # M:3
    w = m.when_ticks("M", 4)
    m.add("M")  # 5
    assert not w.done
    m.add("M")  # 7 == 3 + 4
    assert w.wait(TIMEOUT)


def test_when_args_matches_items_on_activation() -> None:
    m = Machine(schema())
    w = m.when_args("M", {"id": 2, "kind": "x"})
    m.add("M", {"id": 1, "kind": "x"})
    assert not w.done
    m.add("M", {"id": 2})
    assert not w.done
    m.add("B", {"id": 2, "kind": "x"})  # another state
    assert not w.done
    m.add("M", {"id": 2, "kind": "x", "more": True})
    assert w.wait(TIMEOUT)


def test_when_err_from_handler_exception() -> None:
    boom = RuntimeError("handler failed")

    class Handlers:
        def A_enter(self, e: Any) -> None:
            raise boom

    m = Machine(schema())
    m.bind(Handlers())
    w = m.when_err()
    t = threading.Thread(target=m.add, args=("A",), daemon=True)
    t.start()
    assert w.wait(TIMEOUT)
    t.join(TIMEOUT)
    assert m.err is boom
    assert not m.is_active("A")


def test_when_query_gets_clock_dict() -> None:
    m = Machine(schema())
    seen: list[dict[str, int]] = []

    def fn(clock: dict[str, int]) -> bool:
        seen.append(dict(clock))
        return clock["A"] >= 3

    w = m.when_query(fn)
    m.add("A")
    m.remove("A")
    assert not w.done
    m.add("A")
    assert w.wait(TIMEOUT)
    assert seen, "query function never called"
    assert set(seen[-1]) == {"A", "B", "M", "Exception"}
    assert seen[-1]["A"] == 3


def test_when_queue_end_pending_while_queue_runs() -> None:
    got: dict[str, Any] = {}

    class Handlers:
        def A_state(self, e: Any) -> None:
            w = e.machine.when_queue_end()
            got["w"] = w
            got["done_inside"] = w.done
            e.machine.add("B")  # queued, keeps the queue running

        def B_state(self, e: Any) -> None:
            got["done_in_B"] = got["w"].done

    m = Machine(schema())
    m.bind(Handlers())
    assert m.add("A") == Result.EXECUTED
    assert got["done_inside"] is False
    assert got["done_in_B"] is False
    assert got["w"].wait(TIMEOUT) is True
    assert m.is_active("B")


def test_waiting_methods_reject_unknown_states() -> None:
    m = Machine(schema())
    for call in (
        lambda: m.when("Nope"),
        lambda: m.when(["A", "Nope"]),
        lambda: m.when_not("Nope"),
        lambda: m.when_time(["Nope"], [1]),
        lambda: m.when_ticks("Nope", 1),
        lambda: m.when_args("Nope", {}),
        lambda: m.new_state_ctx("Nope"),
    ):
        with pytest.raises(StateError, match="Nope"):
            call()


# ---------------------------------------------------------------------------
# state contexts


def test_state_ctx_expires_when_tick_changes() -> None:
    m = Machine(schema())
    m.add("A")
    ctx = m.new_state_ctx("A")
    calls: list[str] = []
    ctx.on_expire(lambda: calls.append("first"))
    assert ctx.state == "A"
    assert ctx.tick == 1
    assert ctx.expired is False
    m.add("A")  # already active, not multi: tick unchanged
    m.add("B")
    assert ctx.expired is False
    assert calls == []
    m.remove("A")
    assert ctx.expired is True
    assert calls == ["first"]
    # registering after expiry calls at once; nothing is called twice
    ctx.on_expire(lambda: calls.append("late"))
    assert calls == ["first", "late"]
    m.add("A")
    assert calls == ["first", "late"]
    assert ctx.when_expired().wait(0) is True
    # a fresh context follows the new tick
    ctx2 = m.new_state_ctx("A")
    assert ctx2.tick == 3 and not ctx2.expired


def test_state_ctx_of_inactive_state_expires_on_activation() -> None:
    m = Machine(schema())
    ctx = m.new_state_ctx("B")
    assert not ctx.expired
    m.add("A")
    assert not ctx.expired
    m.add("B")
    assert ctx.expired


def test_state_ctx_of_multi_state_expires_on_each_call() -> None:
    m = Machine(schema())
    m.add("M")
    ctx = m.new_state_ctx("M")
    assert not ctx.expired
    m.add("M")
    assert ctx.expired


def test_state_ctx_not_expired_by_canceled_transition() -> None:
    class Handlers:
        def A_exit(self, e: Any) -> bool:
            return False

    m = Machine(schema())
    m.add("A")
    m.bind(Handlers())
    ctx = m.new_state_ctx("A")
    assert m.remove("A") == Result.CANCELED
    assert not ctx.expired


def test_state_ctx_cancels_work_forked_from_handler() -> None:
    started = threading.Event()
    outcome: dict[str, Any] = {}

    def worker(ctx: Any) -> None:
        outcome["expired_at_start"] = ctx.expired
        started.set()
        outcome["woke"] = ctx.when_expired().wait(TIMEOUT)
        outcome["expired_at_end"] = ctx.expired

    threads: list[threading.Thread] = []

    class Handlers:
        def A_state(self, e: Any) -> None:
            ctx = e.machine.new_state_ctx("A")
            t = threading.Thread(target=worker, args=(ctx,), daemon=True)
            threads.append(t)
            t.start()

    m = Machine(schema())
    m.bind(Handlers())
    m.add("A")
    assert started.wait(TIMEOUT)
    assert outcome["expired_at_start"] is False
    m.remove("A")
    threads[0].join(TIMEOUT)
    assert not threads[0].is_alive()
    assert outcome == {"expired_at_start": False, "woke": True, "expired_at_end": True}


def test_state_ctx_expires_on_dispose() -> None:
    m = Machine(schema())
    m.add("A")
    ctx = m.new_state_ctx("A")
    calls: list[int] = []
    ctx.on_expire(lambda: calls.append(1))
    m.dispose()
    assert m.when_disposed().wait(TIMEOUT)
    assert ctx.expired
    assert calls == [1]


# ---------------------------------------------------------------------------
# disposal


def test_dispose_releases_every_pending_thread_waiter() -> None:
    waiters: dict[str, Any] = {}
    machines = []
    for kind in PENDING_ON_DISPOSE:
        m, w, _ = make_pending(kind)
        machines.append(m)
        waiters[kind] = (m, w)
    # one machine, all kinds at once
    shared = Machine(schema(), id="shared")
    shared.add(["A", "B"])
    shared_waiters = {
        "when": shared.when("M"),
        "when_not": shared.when_not("A"),
        "when_time": shared.when_time(["A"], [9]),
        "when_ticks": shared.when_ticks("B", 5),
        "when_args": shared.when_args("M", {"x": 1}),
        "when_err": shared.when_err(),
        "when_query": shared.when_query(lambda c: c["M"] > 10),
    }
    assert not any(w.done for w in shared_waiters.values())
    disposed = shared.when_disposed()

    results: dict[str, bool] = {}
    lock = threading.Lock()

    def block(name: str, w: Any) -> None:
        # far longer than the join below: only disposal can end this wait
        r = w.wait(timeout=50)
        with lock:
            results[name] = r

    threads = [
        threading.Thread(target=block, args=(f"shared:{k}", w), daemon=True)
        for k, w in shared_waiters.items()
    ] + [
        threading.Thread(target=block, args=(f"own:{k}", w), daemon=True)
        for k, (_, w) in waiters.items()
    ]
    for t in threads:
        t.start()
    shared.dispose()
    for m, _ in waiters.values():
        m.dispose()
    for t in threads:
        t.join(TIMEOUT)
    assert not any(t.is_alive() for t in threads), "dispose left waiters blocked"
    assert disposed.wait(TIMEOUT) is True
    assert shared.is_disposed
    expected = {f"shared:{k}": False for k in shared_waiters}
    expected.update({f"own:{k}": False for k in waiters})
    assert results == expected
    for w in shared_waiters.values():
        assert w.wait(timeout=0) is False
    # mutations after disposal are canceled
    assert shared.add("M") == Result.CANCELED
    assert shared.remove("A") == Result.CANCELED
    assert shared.set("B") == Result.CANCELED


def test_on_dispose_called_once_with_machine() -> None:
    m = Machine(schema())
    seen: list[Any] = []
    m.on_dispose(lambda mach: seen.append(mach))
    m.dispose()
    assert m.when_disposed().wait(TIMEOUT)
    m.dispose()  # second call is harmless
    assert seen == [m]


# ---------------------------------------------------------------------------
# asyncio


def _start_thread(fn: Callable[[], Any]) -> threading.Thread:
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("source", ["thread", "loop"])
@pytest.mark.parametrize("kind", list(CASES))
def test_asyncio_await_woken(kind: str, source: str) -> None:
    m, w, trigger = make_pending(kind)
    trigger_threads: list[threading.Thread] = []
    trigger_idents: list[int] = []

    def do_trigger() -> None:
        trigger_idents.append(threading.get_ident())
        trigger(m)

    async def main() -> tuple[Any, int, int]:
        loop = asyncio.get_running_loop()
        me = threading.get_ident()
        if source == "thread":
            # starts only once this task is suspended in the await below
            loop.call_soon(lambda: trigger_threads.append(_start_thread(do_trigger)))
        else:
            loop.call_soon(do_trigger)
        res = await asyncio.wait_for(_await(w), TIMEOUT)
        return res, me, threading.get_ident()

    res, before, after = asyncio.run(main())
    for t in trigger_threads:
        t.join(TIMEOUT)
    assert res is True
    assert after == before, "waiter resumed on a different thread"
    assert len(trigger_idents) == 1
    if source == "thread":
        assert trigger_idents[0] != before
    else:
        assert trigger_idents[0] == before


def test_asyncio_loop_in_worker_thread_woken_from_main_thread() -> None:
    m = Machine(schema())
    w = m.when("A")
    out: dict[str, Any] = {}
    suspended = threading.Event()

    async def main() -> None:
        out["loop_thread"] = threading.get_ident()
        asyncio.get_running_loop().call_soon(suspended.set)
        out["res"] = await asyncio.wait_for(_await(w), TIMEOUT)
        out["resumed_on"] = threading.get_ident()

    t = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    t.start()
    assert suspended.wait(TIMEOUT)
    m.add("A")
    t.join(TIMEOUT)
    assert "res" in out, "the awaiting loop was never woken"
    assert out["res"] is True
    assert out["resumed_on"] == out["loop_thread"] != threading.get_ident()


def test_asyncio_await_can_time_out_and_be_cancelled() -> None:
    m = Machine(schema())
    w = m.when("A")

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(_await(w), 0.05)
        # the waiter survives the cancelled await
        asyncio.get_running_loop().call_soon(m.add, "A")
        assert await asyncio.wait_for(_await(w), TIMEOUT) is True

    asyncio.run(main())


@pytest.mark.parametrize("source", ["thread", "loop"])
@pytest.mark.parametrize("kind", PENDING_ON_DISPOSE)
def test_asyncio_dispose_releases_await_with_false(kind: str, source: str) -> None:
    m, w, _ = make_pending(kind)
    threads: list[threading.Thread] = []

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        if source == "thread":
            loop.call_soon(lambda: threads.append(_start_thread(m.dispose)))
        else:
            loop.call_soon(m.dispose)
        return await asyncio.wait_for(_await(w), TIMEOUT)

    assert asyncio.run(main()) is False
    for t in threads:
        t.join(TIMEOUT)
    assert m.when_disposed().wait(TIMEOUT)


def test_asyncio_when_queue_end() -> None:
    in_handler = threading.Event()
    release = threading.Event()

    class Handlers:
        def A_state(self, e: Any) -> None:
            in_handler.set()
            # test only: hold the queue until the loop has a pending waiter
            release.wait(TIMEOUT)

    m = Machine(schema())
    m.bind(Handlers())
    t = _start_thread(lambda: m.add("A"))

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, in_handler.wait, TIMEOUT)
        w = m.when_queue_end()
        assert not w.done
        loop.call_soon(release.set)
        return await asyncio.wait_for(_await(w), TIMEOUT)

    assert asyncio.run(main()) is True
    t.join(TIMEOUT)
    assert m.is_active("A")


# ---------------------------------------------------------------------------
# trio


@pytest.mark.parametrize("source", ["thread", "loop"])
@pytest.mark.parametrize("kind", list(CASES))
def test_trio_await_woken(kind: str, source: str) -> None:
    m, w, trigger = make_pending(kind)
    trigger_threads: list[threading.Thread] = []
    trigger_idents: list[int] = []

    def do_trigger() -> None:
        trigger_idents.append(threading.get_ident())
        trigger(m)

    async def main() -> tuple[Any, int, int]:
        me = threading.get_ident()

        async def fire() -> None:
            if source == "thread":
                trigger_threads.append(_start_thread(do_trigger))
            else:
                do_trigger()

        res: Any = None
        async with trio.open_nursery() as nursery:
            # runs once the main task is suspended in the await below
            nursery.start_soon(fire)
            with trio.fail_after(TIMEOUT):
                res = await w
        return res, me, threading.get_ident()

    res, before, after = trio.run(main)
    for t in trigger_threads:
        t.join(TIMEOUT)
    assert res is True
    assert after == before
    assert len(trigger_idents) == 1
    if source == "thread":
        assert trigger_idents[0] != before
    else:
        assert trigger_idents[0] == before


def test_trio_await_can_be_cancelled() -> None:
    m = Machine(schema())
    w = m.when("A")

    async def main() -> None:
        with trio.move_on_after(0.05) as scope:
            await w
        assert scope.cancelled_caught
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, m.add, "A")
            with trio.fail_after(TIMEOUT):
                assert await w is True

    trio.run(main)


@pytest.mark.parametrize("source", ["thread", "loop"])
@pytest.mark.parametrize("kind", PENDING_ON_DISPOSE)
def test_trio_dispose_releases_await_with_false(kind: str, source: str) -> None:
    m, w, _ = make_pending(kind)
    threads: list[threading.Thread] = []

    async def main() -> Any:
        async def fire() -> None:
            if source == "thread":
                threads.append(_start_thread(m.dispose))
            else:
                m.dispose()

        res: Any = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fire)
            with trio.fail_after(TIMEOUT):
                res = await w
        return res

    assert trio.run(main) is False
    for t in threads:
        t.join(TIMEOUT)
    assert m.when_disposed().wait(TIMEOUT)


def test_trio_when_queue_end() -> None:
    in_handler = threading.Event()
    release = threading.Event()

    class Handlers:
        def A_state(self, e: Any) -> None:
            in_handler.set()
            # test only: hold the queue until the trio task has a pending waiter
            release.wait(TIMEOUT)

    m = Machine(schema())
    m.bind(Handlers())
    t = _start_thread(lambda: m.add("A"))

    async def main() -> Any:
        assert await trio.to_thread.run_sync(in_handler.wait, TIMEOUT)
        w = m.when_queue_end()
        assert not w.done

        async def fire() -> None:
            release.set()

        res: Any = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fire)
            with trio.fail_after(TIMEOUT):
                res = await w
        return res

    assert trio.run(main) is True
    t.join(TIMEOUT)
    assert m.is_active("A")


def test_trio_loop_in_worker_thread_woken_from_main_thread() -> None:
    m = Machine(schema())
    w = m.when_ticks("M", 3)
    out: dict[str, Any] = {}
    suspended = threading.Event()

    async def main() -> None:
        out["loop_thread"] = threading.get_ident()
        token = trio.lowlevel.current_trio_token()
        token.run_sync_soon(suspended.set)
        with trio.fail_after(TIMEOUT):
            out["res"] = await w
        out["resumed_on"] = threading.get_ident()

    t = threading.Thread(target=trio.run, args=(main,), daemon=True)
    t.start()
    assert suspended.wait(TIMEOUT)
    m.add("M")
    m.add("M")  # M: 1 -> 3
    t.join(TIMEOUT)
    assert "res" in out, "the awaiting trio run was never woken"
    assert out["res"] is True
    assert out["resumed_on"] == out["loop_thread"] != threading.get_ident()


# ---------------------------------------------------------------------------
# packaging


def test_import_does_not_import_trio() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import asyncmachine, sys; assert 'trio' not in sys.modules, "
            "'trio imported'",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
