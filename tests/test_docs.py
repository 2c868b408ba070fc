"""Every Python sample in the README and the docs runs, in order, file by file.

A sample preceded by the line ``<!-- not-run: reason -->`` is skipped (say why).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"(<!-- not-run: [^>]+ -->\n)?```python\n(.*?)```", re.S)

# Runs the samples of one document in one namespace, like a reader pasting them in turn
# (into `python -m asyncio` where a sample uses top-level await).
_RUNNER = """
import ast, asyncio, inspect, json, sys
namespace = {"__name__": "__main__"}
loop = asyncio.new_event_loop()
for number, source in enumerate(json.load(sys.stdin), start=1):
    try:
        code = compile(source, f"<sample {number}>", "exec", ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        if code.co_flags & inspect.CO_COROUTINE:
            loop.run_until_complete(eval(code, namespace))
        else:
            exec(code, namespace)
    except BaseException as e:
        print(f"sample {number} failed: {type(e).__name__}: {e}", file=sys.stderr)
        raise
"""


def samples(document: Path) -> list[str]:
    """The document's Python samples that are meant to run."""
    return [code for skip, code in _BLOCK.findall(document.read_text()) if not skip]


WITH_SAMPLES = [d for d in DOCUMENTS if samples(d)]


@pytest.mark.parametrize("document", WITH_SAMPLES, ids=[d.name for d in WITH_SAMPLES])
def test_samples_run(document: Path, tmp_path: Path) -> None:
    import json

    code = samples(document)
    result = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", "-c", _RUNNER],
        input=json.dumps(code),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "OPENAI_API_KEY": "sk-docs-samples-never-call-the-network"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_export_checker_script_accepts_exports_and_catches_forgeries(
    tmp_path: Path,
) -> None:
    document = (ROOT / "docs" / "export-format.md").read_text()
    script = re.search(
        r"### Checking a file without eventmem\n\n<!--[^>]*-->\n```python\n(.*?)```", document, re.S
    )
    assert script is not None
    (tmp_path / "check.py").write_text(script.group(1))
    cli = [sys.executable, "-m", "eventmem"]
    subprocess.run([*cli, "demo", "--db", "d.db"], cwd=tmp_path, check=True, capture_output=True)
    export = subprocess.run(
        [*cli, "export", "d.db"], cwd=tmp_path, check=True, capture_output=True
    ).stdout
    (tmp_path / "good.jsonl").write_bytes(export)
    (tmp_path / "bad.jsonl").write_bytes(export.replace(b"Lisbon", b"Porto", 1))
    good = subprocess.run(
        [sys.executable, "check.py", "good.jsonl"], cwd=tmp_path, capture_output=True, text=True
    )
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("ok: 1 sessions")
    bad = subprocess.run(
        [sys.executable, "check.py", "bad.jsonl"], cwd=tmp_path, capture_output=True, text=True
    )
    assert bad.returncode != 0
    assert "hash mismatch" in bad.stderr


def test_the_docs_have_samples() -> None:
    assert sum(len(samples(d)) for d in DOCUMENTS) >= 10
