"""The README's network quickstart runs as written (real py-libp2p, loopback)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_network_quickstart_runs_and_prints_what_it_says() -> None:
    (block,) = [b for b in python_blocks() if "from ampubsub_plugin import Topic" in b]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README-network", "exec"), {})
    assert out.getvalue() == "True (Baz:1)\n"


def test_set_up_is_two_commands() -> None:
    text = README.read_text()
    section = text.split("## Set-up", 1)[1].split("##", 1)[0]
    (commands,) = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    lines = [line for line in commands.splitlines() if line.strip()]
    assert len(lines) == 2
    assert "ampubsub demo" in lines[0]
    assert "pytest" in lines[1]
