"""``eventmem demo``: a scripted conversation saved through the async API, its pruned
buffer after every turn, and the full log that keeps every message."""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from datetime import datetime, timezone

import anyio

import eventmem
from eventmem.cli.args import model_name, non_negative_int
from eventmem.cli.common import EXIT_OK, EXIT_PROBLEM, Style, clip, error
from eventmem.cli.stores import creatable, psql_inspect, shown
from eventmem.events import StepRecorded, TurnSaved
from eventmem.messages import Message
from eventmem.store.base import is_postgres_url

__all__ = [
    "DEFAULT_DEMO_DB",
    "DEFAULT_DEMO_LIMIT",
    "DEFAULT_DEMO_MODEL",
    "DEMO_CONVERSATION",
    "configure_demo",
    "run_demo",
]

DEFAULT_DEMO_DB = "eventmem-demo.db"
DEFAULT_DEMO_LIMIT = 120
DEFAULT_DEMO_MODEL = "gpt-4o"
_MAX_SHOWN = 8  # buffer lines the demo prints

# A small travel-planning support chat: (what the user says, what the assistant answers).
# Turn 1 carries facts (dates, budget, diet) that the token limit pushes out of the
# buffer later on, while the log keeps them.
DEMO_CONVERSATION: tuple[tuple[str, str], ...] = (
    (
        "Hi! I'm planning 4 days in Lisbon, 12-15 May, for two adults. "
        "Budget is about 1500 EUR without flights, and my partner is vegetarian.",
        "Lovely choice for May. I'll keep to 1500 EUR for two and flag vegetarian-friendly "
        "places. Shall we start with where to stay?",
    ),
    (
        "Yes please. We like walking and don't want to rent a car.",
        "Then stay central: Baixa or Chiado are flat-ish and close to trams and the metro. "
        "Alfama is charming but steep.",
    ),
    (
        "Chiado sounds good. Any hotel around 150 EUR a night?",
        "Several boutique hotels in Chiado are 130-170 EUR in mid-May. Book soon: the week "
        "of 12 May is busy.",
    ),
    (
        "How do we get from the airport to Chiado?",
        "Take the red metro line to Alameda, change to the green line for Baixa-Chiado: "
        "about 35 minutes. A taxi is 20-25 minutes.",
    ),
    (
        "Is the Lisboa Card worth it?",
        "For 3 or more museum visits plus transport, yes. The 72-hour card covers metro, "
        "trams and the Belem monuments.",
    ),
    (
        "We'd love a day trip. Sintra or Cascais?",
        "Sintra for palaces and forest walks, Cascais for the sea. Sintra is 40 minutes by "
        "train from Rossio; go early to beat the queues.",
    ),
    (
        "Let's do Sintra on day 2. Where should we have dinner that night?",
        "Back in Lisbon, try a tasca in Principe Real: several have good vegetable dishes, "
        "and dinner for two is around 50 EUR.",
    ),
    (
        "Can you remind me of our total budget and dates?",
        "Your dates and budget were in our first messages, which are no longer in my "
        "context window. Could you repeat them?",
    ),
    (
        "Sure: 12-15 May, 1500 EUR. Does the plan still fit?",
        "Yes: about 600 EUR hotel, 120 EUR Lisboa Cards, 40 EUR Sintra, leaving roughly "
        "700 EUR for food and extras.",
    ),
    (
        "Perfect. Please send me a short summary.",
        "Lisbon 12-15 May: Chiado hotel, metro from the airport, Lisboa Card, Sintra on "
        "day 2, dinner in Principe Real. Boa viagem!",
    ),
)


def configure_demo(parser: argparse.ArgumentParser) -> None:
    """Add the ``demo`` options: ``--db``, ``--limit``, ``--model``."""
    parser.add_argument(
        "--db",
        metavar="PATH",
        default=DEFAULT_DEMO_DB,
        help=(
            "SQLite file or postgresql:// URL to write (created if missing; default: "
            f"./{DEFAULT_DEMO_DB})"
        ),
    )
    parser.add_argument(
        "--limit",
        metavar="N",
        type=non_negative_int,
        default=DEFAULT_DEMO_LIMIT,
        help=f"max_token_limit of the buffer (default: {DEFAULT_DEMO_LIMIT})",
    )
    parser.add_argument(
        "--model",
        metavar="M",
        type=model_name,
        default=DEFAULT_DEMO_MODEL,
        help=f"model whose tokenizer counts the tokens (default: {DEFAULT_DEMO_MODEL})",
    )


def _new_session_id() -> str:
    now = datetime.now(timezone.utc)
    return "demo-" + now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def _unused_session(store: eventmem.Store) -> str:
    base = session = _new_session_id()
    suffix = 1
    while await store.version(session) > 0:  # an older run got the same id
        suffix += 1
        session = f"{base}-{suffix}"
    return session


async def _play(store: eventmem.Store, session: str, limit: int, model: str) -> list[Message]:
    """Save the conversation, printing the buffer's figures after each turn."""
    style = Style.for_stream(sys.stdout)
    memory = store.token_buffer(session, max_token_limit=limit, model=model, return_messages=True)
    print(style.bold(f"eventmem demo: session {session}"))
    print(f"max_token_limit {limit}, tokens counted for {model} ({memory.counter.name})")
    print()
    print(style.dim("turn  buffer tokens  visible  pruned  events"))
    saved = 0
    messages: list[Message] = []
    for turn, (question, answer) in enumerate(DEMO_CONVERSATION, start=1):
        await memory.asave_context({"input": question}, {"output": answer})
        saved += 2
        loaded = await memory.aload_memory_variables({})
        messages = loaded[memory.memory_key]
        tokens = eventmem.count_tokens(messages, model=model)
        events = await store.version(session)  # positions are gapless: last = count
        print(
            f"{turn:>4}  {f'{tokens}/{limit}':>13}  {len(messages):>7}  "
            f"{saved - len(messages):>6}  {events:>6}"
        )
    return messages


def _print_buffer(messages: list[Message], model: str, width: int) -> None:
    style = Style.for_stream(sys.stdout)
    tokens = eventmem.count_tokens(messages, model=model)
    print()
    print(style.bold(f"Buffer the model sees now ({len(messages)} messages, {tokens} tokens):"))
    shown_messages = messages
    if len(messages) > _MAX_SHOWN:  # keep the account short with a large --limit
        shown_messages = messages[-(_MAX_SHOWN - 1) :]
        print(f"  ... {len(messages) - len(shown_messages)} older messages not shown")
    for message in shown_messages:
        print("  " + clip(message.buffer_line(), width - 2))
    if not messages:
        print("  (empty: no message fits within the limit)")


async def _print_log(store: eventmem.Store, session: str, visible: int, width: int) -> None:
    style = Style.for_stream(sys.stdout)
    log = [event async for event in store.events(session)]
    # Messages enter the buffer from turns and (for agent memories) steps.
    saved_by = [
        (e.position, e.data.messages)
        for e in log
        if isinstance(e.data, (TurnSaved, StepRecorded)) and e.data.messages
    ]
    in_log = sum(len(m) for _, m in saved_by)
    print()
    print(style.bold("The full history stays in the log:"))
    print(
        f"  {len(log)} events, {in_log} messages saved, {visible} visible, "
        f"{in_log - visible} pruned from the buffer (not from the log)"
    )
    if saved_by:
        position, first = saved_by[0]
        lead = f"  event {position} still holds: "
        print(lead + clip(first[0].buffer_line(), width - len(lead)))
        print(f"  hash chain head (event {log[-1].position}): {log[-1].hash[:16]}...")


async def _demo(path: str, resolved: str, limit: int, model: str) -> int:
    width = max(min(shutil.get_terminal_size((100, 24)).columns, 100), 40)
    async with eventmem.open(path) as store:
        session = await _unused_session(store)
        messages = await _play(store, session, limit, model)
        _print_buffer(messages, model, width)
        await _print_log(store, session, len(messages), width)
        sessions = await store.sessions()

    async with eventmem.open(path, create=False, read_only=True) as store:
        reopened = await store.messages(session)
    where = shown(path)
    if reopened != messages:
        error(
            f"reopened {where}: the buffer differs "
            f"({len(reopened)} messages instead of {len(messages)})"
        )
        return EXIT_PROBLEM
    print(f"reopened {where}: buffer identical")
    print()
    noun = "session" if len(sessions) == 1 else "sessions"
    print(f"database: {resolved} ({len(sessions)} {noun}; each run adds one)")
    query = "SELECT session_id, position, kind FROM events ORDER BY id"
    if is_postgres_url(path):
        print(f"inspect it: {psql_inspect(path, query)}")
    else:
        print(f"inspect it: sqlite3 {shlex.quote(path)} {shlex.quote(query)}")
    return EXIT_OK


def run_demo(args: argparse.Namespace) -> int:
    """Run ``demo``: save the conversation, show the buffer and the log, reopen."""
    path: str = args.db
    limit: int = args.limit
    model: str = args.model
    resolved = shown(path) if is_postgres_url(path) else str(creatable(path))
    return anyio.run(_demo, path, resolved, limit, model, backend="asyncio")
