"""The core in one screen: relations, auto states, handlers, waiting.

Run: python examples/core_quickstart.py
"""

from __future__ import annotations

import threading

from asyncmachine import Event, Machine, State

SCHEMA = {
    "Wet": State(require=["Water"]),
    "Dry": State(remove=["Water"]),
    "Water": State(add=["Wet"], remove=["Dry"]),
    "Tick": State(multi=True),
    "Ready": State(auto=True, require=["Water"]),
}


class Handlers:
    def __init__(self) -> None:
        self.log: list[str] = []

    def Water_enter(self, e: Event) -> bool:
        # negotiation: refuse water when asked to
        return not e.args.get("drought", False)

    def Water_state(self, e: Event) -> None:
        self.log.append(f"water arrived, called {e.transition.called_states}")

    def Dry_state(self, e: Event) -> None:
        self.log.append("dried out")


def main() -> None:
    machine = Machine(SCHEMA, id="drywaterwet", tags=["kind:demo"])
    handlers = Handlers()
    machine.bind(handlers)

    print("refused:", machine.add("Water", {"drought": True}).name)
    print("added:  ", machine.add("Water").name, machine)
    print("all:    ", machine.string_all())

    waiter = machine.when("Dry")
    threading.Thread(target=machine.add, args=("Dry",)).start()
    print("dry in time:", waiter.wait(timeout=5), machine)

    for line in handlers.log:
        print("handler:", line)
    machine.dispose()


if __name__ == "__main__":
    main()
