"""The default failure output: short, about the machine under check."""

from __future__ import annotations

import re

import pytest

from .helpers import run

FAILURES = """
    import threading

    import pytest

    from asyncmachine import Machine, State

    SCHEMA = {"Job": State(), "Idle": State(), "Busy": State(remove=["Idle"])}


    def test_clock(ampubsub_network):
        net = ampubsub_network(peers=5, machines=1)
        worker = Machine(SCHEMA, id="worker")
        worker.export_to(net[0])
        worker.add("Job")
        worker.remove("Job")
        worker.add("Job")
        net.assert_eventually_clock("worker", {"Job": 3})
        net.assert_eventually_clock("worker", {"Job": 4}, timeout=0.5)


    def test_ghost(ampubsub_network):
        net = ampubsub_network(peers=3, machines=1)
        net.assert_eventually_active("ghost", "Foo", timeout=0.3)


    def test_consistently(ampubsub_network):
        net = ampubsub_network(peers=3)
        worker = Machine(SCHEMA, id="worker")
        worker.export_to(net[0])
        worker.add("Idle")
        net.assert_eventually_active("worker", "Idle")
        threading.Timer(0.2, worker.add, ["Busy"]).start()  # Busy removes Idle
        net.assert_consistently_active("worker", "Idle", duration=5)
"""


def _failure(text: str, name: str) -> list[str]:
    """The lines of one test's failure section, up to the next one."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"_+ {name} _+$", line))
    end = next(
        (
            i
            for i, line in enumerate(lines[start + 1 :], start + 1)
            if re.match(r"_+ \w+ _+$|=+ short test summary", line)
        ),
        len(lines),
    )
    return lines[start:end]


def test_one_failing_clock_check_on_5_peers_is_short(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(FAILURES)
    result = run(pytester)
    result.assert_outcomes(failed=3)
    clock = _failure(result.stdout.str(), "test_clock")
    print("\n".join(clock))
    assert len(clock) <= 40, "\n".join(clock)
    result.stdout.fnmatch_lines(
        [
            "E * worker clock {'Job': 4}: not met after 0.5?s "
            "(waiting for peer 1:?????? to see worker at Job=4)",
            "E * first to disagree: peer 1:?????? sees Job=3 (want 4) (active: Job)",
            "E * what each peer saw:",
            "E * peer * machine * active states * ticks * updated * conn",
            "E * ---*",
            # the rows of the machine under check first, the owner's on top
            "E * 0:?????? * worker (owner) * Job=3 (want 4)",
            "E * 1:?????? * worker@?????? * Job=3 (want 4) * yes",
            "E * 2:?????? * worker@?????? * Job=3 (want 4) * yes",
            "E * 3:?????? * worker@?????? * Job=3 (want 4) * yes",
            "E * 4:?????? * worker@?????? * Job=3 (want 4) * yes",
            "E * (+* rows of other machines)",
            "E * (full report: pytest -v or --ampubsub-report=full)",
        ]
    )
    # no report section by default
    assert "- ampubsub network 0 (" not in result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "E * ghost Foo active: not met after 0.3?s *",
            "E * no peer exports 'ghost'; exported: p0-m0@0, p1-m0@1, p2-m0@2",
        ]
    )
    consistently = _failure(result.stdout.str(), "test_consistently")
    print("\n".join(consistently))
    result.stdout.fnmatch_lines(
        [
            ">*net.assert_consistently_active(*",
            "E * worker Idle stopped being active ?.??s into the 5s hold, first on "
            "peer ?:?????? (active: Busy; Job=0 Idle=2 Busy=1)*",
        ]
    )
    # plugin frames are hidden: the traceback ends at the test's line
    assert not [line for line in consistently if "_plans.py" in line]
    assert not [line for line in consistently if "_network.py" in line]
    assert not any("def run_sync" in line for line in consistently)


def test_full_report_with_v_or_the_option_and_in_junitxml(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(FAILURES)
    for args in (["-v"], ["--ampubsub-report=full"]):
        result = run(pytester, *args, "-k", "clock", "--junitxml=out.xml")
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                "E * 0:?????? * worker (owner) * Job=3 (want 4)",
                "E * 4:?????? * worker@?????? * Job=3 (want 4) * yes",
                # full: the other machines' rows too
                "E * ?:?????? * p?-m0@?????? * *",
                "*- ampubsub network 0 (ampubsub-test-*) -*",
                # one timeline for all peers: the owner's change, who saw it when
                "timeline (all peers, one clock; newest last):",
                # followed from export_to on: every transition is there
                "* 0:?????? * exports worker at Job=0*",
                "* 0:?????? * worker +Job -> Job=1*",
                "* 0:?????? * worker -Job -> Job=2*",
                "* 0:?????? * worker +Job -> Job=3*",
                "* 0:?????? * sent updates *B",
                "* ?:?????? * sees worker at Job=3* (?.???s after its owner)",
                "peer 0 ?????? (*Joined:1*)",
            ]
        )
        xml = (pytester.path / "out.xml").read_text()
        assert '<property name="ampubsub network 0 (ampubsub-test-' in xml
        assert "what each peer saw:" in xml
    bad = run(pytester, "--ampubsub-report=long")
    bad.stderr.fnmatch_lines(
        ["ERROR: --ampubsub-report must be one of short, full, got 'long'"]
    )


def test_peers_take_topics_and_the_marker_a_positional_peers(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        from asyncmachine import Machine, State


        @pytest.mark.ampubsub(2)
        def test_positional_peers(ampubsub_network):
            assert len(ampubsub_network()) == 2


        @pytest.mark.ampubsub(2, 3)
        def test_two_positionals(ampubsub_network):
            ampubsub_network()


        def test_topics_as_peers(ampubsub_network):
            net = ampubsub_network(peers=3)
            worker = Machine({"Foo": State()}, id="worker")
            worker.export_to(net[0])
            worker.add("Foo")
            net.assert_eventually_active("worker", "Foo", peers=[net[1], 2])
            with pytest.raises(TypeError, match="peers must hold peer indexes or top"):
                net.assert_eventually_active("worker", "Foo", peers=["1"])
            with pytest.raises(IndexError, match="peer index 7 out of range"):
                net.assert_eventually_active("worker", "Foo", peers=[7])
            with pytest.raises(ValueError, match="peer 0 exports 'worker' itself"):
                net.assert_eventually_active("worker", "Foo", peers=[net[0]])
        """
    )
    result = run(pytester, "-v")
    result.stdout.fnmatch_lines(
        ["E * TypeError: the ampubsub marker takes at most one positional argument*"]
    )
    result.assert_outcomes(passed=2, failed=1)


def test_help_shows_metavars(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--help")
    result.stdout.fnmatch_lines(
        [
            "*--ampubsub-timeout=SECONDS*",
            "*--ampubsub-transport=memory|libp2p*",
            "*--ampubsub-report=short|full*",
        ]
    )
