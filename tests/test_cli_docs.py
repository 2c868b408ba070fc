"""docs/cli.md ends with every command's real ``--help`` output; this test keeps it true.

Regenerate the section after changing the CLI:

    python -m tests.test_cli_docs --write
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

from eventmem.cli import main

CLI_DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
MARKER = "## Reference: `--help` of every command"
COMMANDS = [
    [],
    ["demo"],
    ["sessions"],
    ["log"],
    ["buffer"],
    ["fork"],
    ["rewind"],
    ["erase"],
    ["seal"],
    ["verify"],
    ["anchor"],
    ["keyring"],
    ["rebuild"],
    ["export"],
    ["import"],
    ["stats"],
    ["ui"],
    ["report"],
]


def help_text(command: list[str]) -> str:
    """``eventmem COMMAND --help`` as a 100-column terminal shows it."""
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal's width
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            assert main([*command, "--help"]) == 0
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved
    return out.getvalue()


def reference_section() -> str:
    parts = [
        MARKER,
        "",
        "Generated from the command itself (`python -m tests.test_cli_docs --write`); a test "
        "fails when it drifts.",
    ]
    for command in COMMANDS:
        title = " ".join(["eventmem", *command])
        parts += ["", f"### `{title} --help`", "", "```text", help_text(command).rstrip(), "```"]
    return "\n".join(parts) + "\n"


def current_section() -> str:
    text = CLI_DOC.read_text()
    return text[text.index(MARKER) :] if MARKER in text else ""


def test_the_cli_reference_matches_the_real_help() -> None:
    assert current_section() == reference_section(), (
        "docs/cli.md's reference section is stale: run `python -m tests.test_cli_docs --write`"
    )


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        raise SystemExit(__doc__)
    text = CLI_DOC.read_text()
    head = text[: text.index(MARKER)] if MARKER in text else text.rstrip() + "\n\n"
    CLI_DOC.write_text(head + reference_section())
