"""What tracing costs per turn: save_context + load_memory_variables, four ways, one run.

* ``main``: the code of the git ref ``--baseline`` (default: the commit of ``main`` this
  branch started from; unpacked with ``git archive``), which has no tracing hooks at all;
* ``absent``: this tree with opentelemetry hidden (``sys.modules['opentelemetry'] =
  None``): the hooks cost an attribute check each;
* ``noop``: opentelemetry-api installed, no tracer provider set (the API's no-op spans);
* ``sdk``: an SDK ``TracerProvider`` recording every span (``SimpleSpanProcessor`` into an
  ``InMemorySpanExporter``, cleared between blocks), position and hash looked up.

Each variant runs in a fresh process per round (rounds interleave the variants, so drift
on a shared machine hits all of them); a process pre-fills its memory until it prunes,
then times blocks of turns. Figures are the median and the 10th percentile (the least
disturbed blocks) of the per-block means; ratios are against ``main`` from the same run.

    .venv/bin/python benchmarks/tracing.py [--quick] [--baseline REF]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("main", "absent", "noop", "sdk")


def worker(variant: str, path: str, blocks: int, turns: int) -> None:
    """Time ``blocks`` blocks of ``turns`` turns; print each block's µs per turn."""
    if variant == "absent":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]
    exporter = None
    if variant == "sdk":
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
    import anyio

    import eventmem

    human = " ".join(f"question{i % 97}" for i in range(40))
    ai = " ".join(f"answer{i % 89}" for i in range(80))

    async def main() -> list[float]:
        async with await eventmem.open(path) as store:
            memory = store.token_buffer("bench", max_token_limit=2000)
            for _ in range(60):  # pre-fill until the buffer prunes
                await memory.asave_context({"input": human}, {"output": ai})
                await memory.aload_memory_variables({})
            figures = []
            for _ in range(blocks):
                start = time.perf_counter()
                for _ in range(turns):
                    await memory.asave_context({"input": human}, {"output": ai})
                    await memory.aload_memory_variables({})
                figures.append((time.perf_counter() - start) / turns * 1e6)
                if exporter is not None:
                    exporter.clear()
            return figures

    figures = anyio.run(main)
    loaded = any(n.startswith("opentelemetry") and sys.modules[n] for n in sys.modules)
    print(
        json.dumps({"figures": figures, "opentelemetry_loaded": loaded, "code": eventmem.__file__})
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument(
        "--baseline", help="git ref without the hooks (default: where HEAD left main)"
    )
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        variant, path, blocks, turns = args.worker
        worker(variant, path, int(blocks), int(turns))
        return
    rounds, blocks, turns = (2, 3, 50) if args.quick else (10, 4, 100)
    ref = (
        args.baseline
        or subprocess.run(
            ["git", "-C", str(ROOT), "merge-base", "main", "HEAD"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    work = Path(tempfile.mkdtemp(prefix="eventmem-bench-tracing-"))
    baseline = work / "baseline"
    baseline.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "eventmem", "migrations"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive, check=True)
    print(f"baseline: {ref}")
    print(f"load average before: {os.getloadavg()}")
    results: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(rounds):
        for variant in VARIANTS:
            env = dict(os.environ)
            # main: the baseline's package first on the path; the others: this tree's.
            env["PYTHONPATH"] = str(baseline if variant == "main" else ROOT)
            db = work / f"{variant}-{r}.db"
            out = subprocess.run(
                [sys.executable, __file__, "--worker", variant, str(db), str(blocks), str(turns)],
                capture_output=True,
                text=True,
                env=env,
                cwd=work,
            )
            if out.returncode:
                raise SystemExit(f"{variant} failed:\n{out.stderr}")
            report = json.loads(out.stdout.splitlines()[-1])
            expected = baseline if variant == "main" else ROOT
            if not report["code"].startswith(str(expected)):
                raise SystemExit(f"{variant} ran {report['code']}, not the code under {expected}")
            if variant == "absent" and report["opentelemetry_loaded"]:
                raise SystemExit("opentelemetry was imported with the package hidden")
            results[variant].extend(report["figures"])
    print(f"load average after: {os.getloadavg()}")
    shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(results["main"])
    print(f"{rounds} rounds x {blocks} blocks x {turns} turns per variant")
    best = {v: sorted(results[v])[len(results[v]) // 10] for v in VARIANTS}
    print(
        f"{'variant':<8} {'median µs':>9} {'vs main':>8} {'p10 µs':>8} {'vs main':>8} {'p90 µs':>8}"
    )
    for variant in VARIANTS:
        figures = sorted(results[variant])
        mid = statistics.median(figures)
        p10 = figures[len(figures) // 10]
        p90 = figures[(len(figures) * 9) // 10 - 1]
        ratio = p10 / best["main"]
        print(f"{variant:<8} {mid:9.1f} {mid / base:8.3f} {p10:8.1f} {ratio:8.3f} {p90:8.1f}")


if __name__ == "__main__":
    main()
