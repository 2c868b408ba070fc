"""The viewer's commands: ``ui`` (a read-only local web server, ``eventmem[ui]``) and
``report`` (a session's pages as one self-contained HTML file; no extra needed)."""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys

from eventmem._files import check_output, safe_output
from eventmem.cli.args import add_db, add_session
from eventmem.cli.common import EXIT_OK, EXIT_USAGE, PROG, error, printable
from eventmem.cli.stores import keys_from_environment, open_existing, require_session, shown
from eventmem.errors import EventmemError

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "configure_report",
    "configure_ui",
    "run_report",
    "run_ui",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
_MISSING_EXTRA = (
    "the viewer needs Starlette and uvicorn, which the 'ui' extra installs: "
    "pip install 'eventmem[ui]'"
)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, got {value}")
    return value


def configure_ui(parser: argparse.ArgumentParser) -> None:
    """Add the ``ui`` arguments."""
    parser.add_argument(
        "db",
        metavar="DB_OR_URL",
        help="eventmem database: a SQLite file or a postgresql:// URL (must exist; opened "
        "read-only)",
    )
    parser.add_argument(
        "--port",
        metavar="N",
        type=_port,
        default=DEFAULT_PORT,
        help=f"port to listen on (default {DEFAULT_PORT}; 0: any free port)",
    )
    parser.add_argument(
        "--host",
        metavar="H",
        default=DEFAULT_HOST,
        help=f"address to listen on (default {DEFAULT_HOST}: this machine only)",
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def run_ui(args: argparse.Namespace) -> int:
    """Run ``ui``: serve the store read-only until interrupted."""
    try:
        import uvicorn

        from eventmem.ui.app import LOOPBACK_HOSTS, create_app
    except ImportError:
        error(_MISSING_EXTRA)
        return EXIT_USAGE

    path: str = args.db
    host: str = args.host
    async with open_existing(path, read_only=True):
        pass  # a missing store or a bad URL is refused here, as one line
    hosts = (*LOOPBACK_HOSTS, host) if _loopback(host) else None
    keys = keys_from_environment()
    app = create_app(path, hosts=hosts, open_options={} if keys is None else {"encryption": keys})
    # Bound here, not by uvicorn: a port in use is one error line, and --port 0's port
    # is known before the address is printed.
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((host.strip("[]"), args.port))
        except OSError as e:
            raise EventmemError(f"cannot listen on {host}:{args.port}: {e.strerror or e}") from None
        listener.listen(128)  # connections wait from now on, while the app starts
        port = listener.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        shown_host = f"[{host.strip('[]')}]" if ":" in host else host
        print(
            f"serving {shown(path)} read-only at http://{shown_host}:{port}/ (Ctrl-C stops it)",
            flush=True,
        )
        if not _loopback(host):
            print(f"{PROG}: warning: {host} is reachable from other machines", file=sys.stderr)
        await server.serve(sockets=[listener])  # Ctrl-C: it stops, then main says so (130)
    finally:
        listener.close()
    return EXIT_OK


def configure_report(parser: argparse.ArgumentParser) -> None:
    """Add the ``report`` arguments."""
    add_db(parser)
    add_session(parser)
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        required=True,
        help="the HTML file to write (written aside, renamed once complete)",
    )
    parser.add_argument(
        "-f",
        "--force",
        action="store_true",
        help="replace FILE if it exists (never a database, nor a file of DB)",
    )


async def run_report(args: argparse.Namespace) -> int:
    """Run ``report``: write the session's report; the output is checked first."""
    from eventmem.ui.report import render_report

    path: str = args.db
    session: str = args.session
    check_output(args.output, force=args.force, protect=[path])  # before reading anything
    async with open_existing(path, read_only=True) as store:
        await require_session(store, session, path)
        page = await render_report(store, session, shown=shown(path))
    with safe_output(args.output, force=args.force, protect=[path]) as sink:
        sink.write(page.encode("utf-8"))
    print(f"wrote {printable(args.output)}: the report of session {printable(repr(session))}")
    return EXIT_OK
