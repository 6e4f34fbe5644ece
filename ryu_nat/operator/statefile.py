"""Redirects added through the REST API, kept in a small file across restarts (``[nat] state_file``).

The file holds JSON, ``{"version": 1, "redirects": ["tcp:8081=10.0.0.3:80", ...]}``:
the redirects added through the API and not deleted since (those of ``[nat]
redirects`` live in the configuration). Each change is written to a new file
beside it, flushed to disk, and renamed over the old one, so a crash leaves
the old file or the new one, never half of one; the change is made only once
it is written.

At start the file is read back. A file that cannot be read or does not parse
gets one line in the log and is moved aside to ``<file>.bad`` (nothing is
lost): the controller starts without those redirects, since a NAT that does
not start would cost every connection, not just the forwarded ports. A
redirect in it that the configuration no longer allows (a host outside the
private network, a port the configuration forwards itself) is left out, with
one line each.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Interface

from ryu_nat.config import ConfigError, RedirectRule, parse_redirect

VERSION = 1
MAX_BYTES = 1 << 20  # far more than 65,535 redirects per protocol take; a bigger file is not ours


@dataclass
class Loaded:
    """What the file gave: the redirects to restore, and one line per problem (for the log)."""

    redirects: list[RedirectRule] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class StateFile:
    """The redirects file at ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def load(self, private: IPv4Interface, configured: Iterable[RedirectRule]) -> Loaded:
        """The redirects kept in the file (none if there is no file yet), but those ``configured`` already
        forwards; problems described, never raised."""
        loaded = Loaded()
        try:
            with open(self.path, "rb") as state:
                raw = state.read(MAX_BYTES + 1)
        except FileNotFoundError:
            return loaded
        except OSError as exc:
            loaded.problems.append(f"[nat] state_file = {self.path!r} cannot be read ({exc.strerror or exc}): "
                                   "starting without the redirects added through the API")
            return loaded
        entries = _entries(raw)
        if isinstance(entries, str):
            aside = self._move_aside()
            loaded.problems.append(f"[nat] state_file = {self.path!r} {entries}: moved to {aside!r}; starting "
                                   "without the redirects added through the API")
            return loaded
        taken = {(rule.proto, rule.public_port) for rule in configured}
        for text in entries:
            try:
                rule = parse_redirect(text, private)
            except ConfigError as exc:
                loaded.problems.append(f"[nat] state_file = {self.path!r}: {exc}; left out")
                continue
            if (rule.proto, rule.public_port) in taken:
                loaded.problems.append(f"[nat] state_file = {self.path!r}: {rule} left out: [nat] redirects or an "
                                       f"earlier line forwards {rule.proto.label} port {rule.public_port}")
                continue
            taken.add((rule.proto, rule.public_port))
            loaded.redirects.append(rule)
        return loaded

    def save(self, redirects: Iterable[RedirectRule]) -> None:
        """Write ``redirects`` as the file's whole content, atomically; OSError if it cannot be written."""
        body = json.dumps({"version": VERSION, "redirects": [str(rule) for rule in redirects]}, indent=1) + "\n"
        directory = os.path.dirname(os.path.abspath(self.path))
        handle, temporary = tempfile.mkstemp(prefix=".redirects-", dir=directory)
        try:
            with os.fdopen(handle, "w") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            os.unlink(temporary)
            raise
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)  # the rename itself reaches the disk
        finally:
            os.close(descriptor)

    def _move_aside(self) -> str:
        aside = self.path + ".bad"
        try:
            os.replace(self.path, aside)
        except OSError:
            return f"{aside} (could not be moved)"
        return aside



def check_state_file(path: str) -> None:
    """ConfigError if ``[nat] state_file`` names a file in a directory that does not exist (or is not writable):
    redirects added through the API could not be kept."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ConfigError(f"[nat] state_file = {path!r}: the directory {directory!r} does not exist")
    if not os.access(directory, os.W_OK):
        raise ConfigError(f"[nat] state_file = {path!r}: the directory {directory!r} is not writable")
    if os.path.isdir(path):
        raise ConfigError(f"[nat] state_file = {path!r} is a directory, not a file")

def _entries(raw: bytes) -> list[str] | str:
    """The redirect lines of the file's bytes, or what is wrong with them."""
    if len(raw) > MAX_BYTES:
        return f"is over {MAX_BYTES} bytes"
    try:
        content = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return f"is not JSON ({exc})"
    except RecursionError:
        return "is not JSON (nested too deep)"
    if not isinstance(content, dict) or content.get("version") != VERSION:
        return f'is not a state file of version {VERSION} ({{"version": {VERSION}, "redirects": [...]}})'
    entries = content.get("redirects")
    if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
        return "has no list of redirects (proto:port=ip:port)"
    return entries
