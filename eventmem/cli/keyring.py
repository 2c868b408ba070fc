"""``keyring``: a new master key, and rotating a keyring's master key
(`eventmem.encryption.Keyring`).

Keys come from the environment, never from an argument (a command line is seen by every
user of the machine): the keyring's current master key from ``EVENTMEM_MASTER_KEY``, a
rotation's new one from ``EVENTMEM_NEW_MASTER_KEY``. A key is printed only when asked
for a new one, and never in an error.
"""

from __future__ import annotations

import argparse
import base64
import os

from eventmem.cli.common import EXIT_OK, plural
from eventmem.cli.stores import MASTER_KEY_VARIABLE, master_key_from
from eventmem.encryption import Keyring, generate_master_key
from eventmem.errors import EventmemError

__all__ = ["NEW_MASTER_KEY_VARIABLE", "configure_keyring", "run_keyring"]

NEW_MASTER_KEY_VARIABLE = "EVENTMEM_NEW_MASTER_KEY"


def configure_keyring(parser: argparse.ArgumentParser) -> None:
    """Add the ``keyring`` arguments: one of its two actions."""
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument(
        "--new-master-key",
        action="store_true",
        help="print a new random master key (base64) for EVENTMEM_MASTER_KEY",
    )
    action.add_argument(
        "--rotate",
        metavar="KEYRING",
        help=(
            f"wrap every data key of KEYRING under {NEW_MASTER_KEY_VARIABLE} instead of "
            f"{MASTER_KEY_VARIABLE}"
        ),
    )


def run_keyring(args: argparse.Namespace) -> int:
    """Run ``keyring``."""
    if args.new_master_key:
        print(base64.b64encode(generate_master_key()).decode())
        return EXIT_OK
    path: str = args.rotate
    if not os.path.isfile(path):
        raise EventmemError(f"there is no keyring file {path}")
    old = _key(MASTER_KEY_VARIABLE)
    new = _key(NEW_MASTER_KEY_VARIABLE)
    if old == new:
        raise EventmemError(
            f"{NEW_MASTER_KEY_VARIABLE} is {MASTER_KEY_VARIABLE}: there is nothing to rotate"
        )
    with Keyring(path, master_key=old) as keyring:
        count = keyring.rotate(new)
    print(
        f"rotated {path}: {plural(count, 'data key')} wrapped under the new master key; "
        f"set {MASTER_KEY_VARIABLE} to it from now on"
    )
    return EXIT_OK


def _key(variable: str) -> bytes:
    text = os.environ.get(variable)
    if not text:
        raise EventmemError(f"set {variable} (64 hex digits or base64) to rotate a keyring")
    return master_key_from(text.strip(), variable)
