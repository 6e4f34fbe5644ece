"""The config files as oslo.config reads them, checked for what it lets pass; and the API token's file.

An unknown ``[nat]`` option (a typo would leave its default in force), one set
twice in a file, an unreadable file, one that is not UTF-8 text, or an INI
syntax error stops start-up with one line naming the file
(:class:`~ryu_nat.config.ConfigError`). The values themselves are checked by
:func:`ryu_nat.config.parse_config`.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence

from oslo_config import cfg as oslo_cfg

from ryu_nat.config import SECTION, ConfigError, check_names

_TOKEN = re.compile(r"^[\x21-\x7e]{16,4096}$")  # printable ASCII, no spaces: fits a header and a password


def check_files(files: Sequence[str], dirs: Sequence[str] = ()) -> None:
    """Read the config files (each ``*.conf`` of ``dirs`` after them) as oslo.config does, and check them.

    Raises ConfigError (one line naming the file) for a file that cannot be
    read, is not UTF-8 text, or breaks INI syntax (an option before any
    section header, a line without ``=``), for a directory that does not exist,
    and for a ``[nat]`` option that is unknown or set twice in one file.
    A later file may set an option again: it overrides, as in oslo.config.
    """
    for directory in dirs:
        if not os.path.isdir(os.path.expanduser(directory)):
            raise ConfigError(f"config directory {directory} does not exist")
    in_dirs = [path for directory in dirs for path in sorted(glob.glob(os.path.join(os.path.expanduser(directory),
                                                                                    "*.conf")))]
    for path in [*files, *in_dirs]:
        options = read_section(path)
        check_names(options, where=f"{path}: ")
        for name, values in options.items():
            if len(values) > 1:
                raise ConfigError(f"{path}: [nat] {name} is set {len(values)} times: keep one")


def read_section(path: str, section: str = SECTION) -> dict[str, list[str]]:
    """Every value each option of ``[section]`` has in the file at ``path``, in file order.

    Section names match as in oslo.config (``[NAT]`` is ``[nat]``). Raises
    ConfigError for a file that cannot be read, is not text, or has an INI syntax error.
    """
    sections: dict[str, dict[str, list[str]]] = {}
    try:
        _SectionReader(os.path.expanduser(path), sections).parse()
    except oslo_cfg.ParseError as exc:
        line = repr(exc.line)
        raise ConfigError(f"{path} line {exc.lineno}: {exc.msg}"
                          + (f": {line if len(line) <= 60 else line[:56] + '...'}" if exc.line else "")) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not a text file (byte 0x{exc.object[exc.start]:02x} at offset {exc.start} "
                          f"is not UTF-8)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    found: dict[str, list[str]] = {}
    for name, options in sections.items():
        if name.lower() == section:
            for option, values in options.items():
                found.setdefault(option, []).extend(values)
    return found


class _SectionReader(oslo_cfg.ConfigParser):
    """oslo.config's own file parser, with a message a newcomer understands for its commonest error."""

    def assignment(self, key: str, value: list[str]) -> None:
        if not self.section:  # oslo.config would say "Section must be started before assignment"
            raise ConfigError(f"{self.filename}: {key} comes before any section header (start the file with [nat])")
        super().assignment(key, value)


def read_token(path: str) -> str:
    """The REST API's token from ``path`` (surrounding white space dropped); ConfigError if the file
    cannot be read or does not hold 16 to 4096 printable characters without spaces."""
    try:
        with open(path, "rb") as token_file:
            raw = token_file.read(8193)
    except OSError as exc:
        raise ConfigError(f"[nat] api_token_file = {path!r} cannot be read: {exc.strerror or exc}") from None
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        token = ""
    if not _TOKEN.match(token):
        raise ConfigError(f"[nat] api_token_file = {path!r} must hold one token of 16 to 4096 printable ASCII "
                          "characters without spaces (e.g. from: openssl rand -hex 32)")
    return token
