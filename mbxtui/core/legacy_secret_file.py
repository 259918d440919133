"""Reading the encrypted file that earlier versions of mbxtui wrote through keyrings.cryptfile, so
that :mod:`mbxtui.core.secret_file` can convert it. Nothing here writes that format.

The format, as keyrings.cryptfile 1.3.9 writes it (``cryptfile.py``, ``file.py``, ``file_base.py``
and ``escape.py`` of that library):

* an INI file read and written by ``configparser.RawConfigParser``, which lowercases option names;
* section and option names escaped: ASCII letters and digits kept, every other byte of the UTF-8
  encoding written ``_XX`` in upper-case hex (so ``mailbox/42/password`` is ``mailbox_2F42_2Fpassword``,
  stored as ``mailbox_2f42_2fpassword``);
* the section ``keyring-setting`` holds ``password reference`` (an entry like the others whose value
  is ``password reference value``: it proves the master password), ``scheme``
  (``[Argon2] AES128.GCM``, earlier ``PyCryptodome [Argon2] AES128.GCM``) and ``version``;
* each value is base64 of a JSON object whose fields are base64: ``salt`` (16 random bytes per entry),
  ``nonce`` (16 bytes), ``data`` (the ciphertext) and ``mac`` (the 16-byte GCM tag);
* the key is Argon2id(master password, salt, time cost 15, 64 MiB, parallelism 2, 16 bytes), the
  cipher AES-128-GCM, and the associated data ``escape(section) + joiner + escape(option)`` with the
  original (not lowercased) names; the joiner is a NUL byte, except the two characters ``\\0`` in
  files of versions 1.3.6 to 1.3.8; entries written before 1.3 have no associated data.
"""

from __future__ import annotations

import base64
import binascii
import configparser
import json
import re
from dataclasses import dataclass

from argon2.exceptions import HashingError
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SETTINGS_SECTION = "keyring-setting"
PASSWORD_REFERENCE = "password reference"
PASSWORD_REFERENCE_VALUE = b"password reference value"
SCHEME = "[Argon2] AES128.GCM"
OLD_SCHEME_PREFIX = "PyCryptodome "

TIME_COST = 15
MEMORY_COST = 2**16  # KiB: 64 MiB
PARALLELISM = 2
KEY_LENGTH = 16

_LEGAL_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_ESCAPED_BYTES = [chr(b) if chr(b) in _LEGAL_CHARACTERS else f"_{b:02X}" for b in range(256)]
_ESCAPE_SEQUENCE = re.compile(rb"_([0-9A-Fa-f]{2})")


class LegacyFileError(Exception):
    """The file is not a keyrings.cryptfile keyring mbxtui can read, or one of its entries is
    damaged. The message names the problem, never a secret."""


class LegacyWrongPassword(LegacyFileError):
    """The master password does not open the file."""


def escape_name(value: str) -> str:
    """keyrings.cryptfile's escape of section and option names, by table: upstream escapes one
    character at a time through a generator, a fifth of a secret read."""
    return "".join(map(_ESCAPED_BYTES.__getitem__, value.encode("utf-8")))


def unescape_name(escaped: str) -> str:
    """The name ``escape_name`` was given, as far as the file keeps it: an option name comes back in
    lower case, since configparser lowercased it (mbxtui's keys are all lower case)."""
    return _ESCAPE_SEQUENCE.sub(
        lambda match: bytes([int(match.group(1), 16)]), escaped.encode("ascii")
    ).decode("utf-8")


@dataclass
class LegacySecretFile:
    """A keyrings.cryptfile file, parsed: ``entries`` maps (escaped section, escaped option) to
    the encrypted payload."""

    file_version: str | None
    entries: dict[tuple[str, str], str]

    @classmethod
    def parse(cls, text: str) -> LegacySecretFile:
        config = configparser.RawConfigParser()
        try:
            config.read_string(text)
        except configparser.Error as exc:
            raise LegacyFileError(f"it is neither mbxtui's format nor an INI file ({exc.message})") from None
        settings = escape_name(SETTINGS_SECTION)
        if not config.has_option(settings, escape_name(PASSWORD_REFERENCE)):
            raise LegacyFileError("it has no master password reference")
        scheme = config.get(settings, escape_name("scheme"), fallback=SCHEME)
        scheme = scheme.removeprefix(OLD_SCHEME_PREFIX)
        if scheme != SCHEME:
            raise LegacyFileError(f"its encryption scheme {scheme!r} is not {SCHEME!r}, the only one mbxtui wrote")
        entries = {
            (section, option): config.get(section, option)
            for section in config.sections()
            for option in config.options(section)
            if section != settings or option == escape_name(PASSWORD_REFERENCE)
        }
        return cls(config.get(settings, escape_name("version"), fallback=None), entries)

    def secrets(self, password: str) -> dict[tuple[str, str], str]:
        """Every entry decrypted, keyed by (service, name), without the password reference.

        Raises LegacyWrongPassword when the password does not open the file, LegacyFileError when
        an entry does not decrypt (then nothing should be converted: an entry would be lost).
        """
        # Each entry has its own salt, but the entries one process wrote share one (mbxtui wrote
        # them so), so keys are remembered per salt: one derivation per process that wrote the file.
        keys: dict[bytes, bytes] = {}
        reference_key = (escape_name(SETTINGS_SECTION), escape_name(PASSWORD_REFERENCE))
        try:
            reference = self._decrypt(reference_key, password, keys)
        except (InvalidTag, LegacyFileError):
            reference = None
        if reference != PASSWORD_REFERENCE_VALUE:
            raise LegacyWrongPassword("the master password does not open it")
        secrets = {}
        for (section, option), payload in self.entries.items():
            if (section, option) == reference_key:
                continue
            service, name = unescape_name(section), unescape_name(option)
            try:
                secrets[(service, name)] = self._decrypt((section, option), password, keys).decode("utf-8")
            except (InvalidTag, UnicodeDecodeError, LegacyFileError):
                raise LegacyFileError(
                    f"the entry {name!r} of {service!r} does not decrypt with the master password "
                    "that opens the file: it is damaged"
                ) from None
        return secrets

    def _decrypt(self, entry: tuple[str, str], password: str, keys: dict[bytes, bytes]) -> bytes:
        section, option = entry
        try:
            fields = json.loads(base64.decodebytes(self.entries[entry].encode("ascii")))
            salt, nonce, data, tag = (
                base64.decodebytes(fields[name].encode("ascii")) for name in ("salt", "nonce", "data", "mac")
            )
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise LegacyFileError(f"the entry {option!r} of {section!r} is not an encrypted value") from None
        if salt not in keys:
            try:
                keys[salt] = derive_key(password, salt)
            except HashingError as exc:  # e.g. a salt cut short
                raise LegacyFileError(f"the entry {option!r} of {section!r} has a salt Argon2 refuses ({exc})") from None
        cipher = AESGCM(keys[salt])
        associated_data = self._associated_data(section, option)
        try:
            return cipher.decrypt(nonce, data + tag, associated_data)
        except InvalidTag:
            # entries written without associated data by keyrings.cryptfile before 1.3
            return cipher.decrypt(nonce, data + tag, None)

    def _associated_data(self, section: str, option: str) -> bytes:
        joiner = "\0"
        if self.file_version is not None:
            try:
                version = tuple(int(part) for part in self.file_version.split("."))
            except ValueError:
                version = ()
            if (1, 3, 6) <= version < (1, 3, 9):
                joiner = "\\0"
        # escape(unescape()) restores the upper-case hex that configparser lowercased in the option
        return (section + joiner + escape_name(unescape_name(option))).encode("ascii")


def derive_key(password: str, salt: bytes) -> bytes:
    """keyrings.cryptfile's key for one salt: about 0.4 s here, by design."""
    return hash_secret_raw(
        secret=password.encode("utf-8"),
        salt=salt,
        time_cost=TIME_COST,
        memory_cost=MEMORY_COST,
        parallelism=PARALLELISM,
        hash_len=KEY_LENGTH,
        type=Type.ID,
    )
