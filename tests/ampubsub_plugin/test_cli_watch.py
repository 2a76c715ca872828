"""watch's picture: filters, JSON form and the highlight of what changed."""

from __future__ import annotations

import re

from rich.console import Console

from ampubsub_plugin._cli.watch import Filters, Picture, render


def machine(ticks: dict[str, int], id: str = "w0") -> dict[str, object]:
    return {
        "peer_id": "12D3KooWpeer",
        "id": id,
        "tags": ["demo"],
        "active": [s for s, t in ticks.items() if t % 2],
        "ticks": ticks,
        "connected": True,
    }


def text_of(picture: Picture, before: Picture | None) -> str:
    console = Console(
        record=True, width=200, force_terminal=True, color_system="standard"
    )
    console.print(render(picture, before))
    return console.export_text(styles=True)


def test_a_changed_machine_is_highlighted_and_an_unchanged_one_is_not() -> None:
    peer = {
        "peer_id": "12D3KooWpeer",
        "address": None,
        "direct": True,
        "machines": 2,
        "last_heard_age": 0.2,
        "last_clock_age": 0.5,
    }
    before = Picture("t", "me", [peer], [machine({"Idle": 1}), machine({"A": 1}, "w1")])
    after = Picture(
        "t", "me", [peer], [machine({"Idle": 2, "Working": 1}), machine({"A": 1}, "w1")]
    )
    shown = text_of(after, before)
    changed = next(line for line in shown.splitlines() if "Working:1" in line)
    same = next(line for line in shown.splitlines() if "A:1" in line)
    bold_yellow = re.compile(r"\x1b\[1;33m")
    assert bold_yellow.search(changed)
    assert not bold_yellow.search(same)
    assert "0.2s ago" in shown and "0.5s ago" in shown and "1 peer(s)" in shown
    assert after.as_json()["peer_count"] == 1


def test_filters_match_peer_ends_id_regex_and_tag_keys() -> None:
    class Remote:
        peer_id = "12D3KooWabcdef"
        id = "worker-7"
        tags = ("role:db", "eu")

    remote = Remote()
    assert Filters(peer="12D3").match(remote)  # type: ignore[arg-type]
    assert Filters(peer="cdef").match(remote)  # type: ignore[arg-type]
    assert not Filters(peer="zzz").match(remote)  # type: ignore[arg-type]
    assert Filters(id=re.compile(r"-\d$")).match(remote)  # type: ignore[arg-type]
    assert not Filters(id=re.compile(r"^db")).match(remote)  # type: ignore[arg-type]
    assert Filters(tag="role").match(remote)  # type: ignore[arg-type]
    assert Filters(tag="eu").match(remote)  # type: ignore[arg-type]
    assert not Filters(tag="db").match(remote)  # type: ignore[arg-type]
