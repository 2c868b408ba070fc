"""The built wheel carries what eventmem needs offline: encodings, migrations, py.typed."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("eventmem-*.whl")
    return built


def test_the_wheel_ships_encodings_migrations_and_types(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in [
        "eventmem/encodings/cl100k_base.tiktoken",
        "eventmem/encodings/o200k_base.tiktoken",
        "eventmem/encodings/SHA256SUMS",
        "eventmem/encodings/LICENSE-tiktoken",
        "eventmem/migrations/sqlite/0001_initial.sql",
        "eventmem/migrations/postgresql/0001_initial.sql",
        "eventmem/py.typed",
        "eventmem/ui/static/viewer.css",
        "eventmem/ui/static/viewer.js",
        "eventmem/ui/static/favicon.svg",
    ]:
        assert required in names


def test_the_installed_wheel_counts_and_stores_with_no_network(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    empty_cache = tmp_path / "empty-tiktoken-cache"
    empty_cache.mkdir()
    env = {
        **os.environ,
        # the installed copy first, then the venv's dependencies; not the source tree
        "PYTHONPATH": os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]]),
        "TIKTOKEN_CACHE_DIR": str(empty_cache),
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
    }
    script = (
        "import anyio, eventmem\n"
        f"assert eventmem.__file__.startswith({str(target)!r}), eventmem.__file__\n"
        "print(eventmem.count_tokens([eventmem.Message(role='human', content='hello')], 'gpt-4'))\n"
        "print(eventmem.count_tokens([eventmem.Message(role='human', content='hello')]))\n"
        "async def main():\n"
        f"    async with eventmem.open({str(tmp_path / 'm.db')!r}) as s:\n"
        "        await s.token_buffer('x').asave_context({'input': 'a'}, {'output': 'b'})\n"
        "        print(len(await s.messages('x')))\n"
        "anyio.run(main)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["8", "8", "2"]
    assert list(empty_cache.iterdir()) == []
