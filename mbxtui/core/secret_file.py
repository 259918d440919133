"""mbxtui's encrypted secrets file: its format, and reading and changing it safely from several
threads and processes. :class:`mbxtui.core.secrets.SecretStore` uses it when there is no OS keyring.

The format is mbxtui's own, read and written here with argon2-cffi and ``cryptography``, so that no
change in another library can make the file unreadable. A file that earlier versions wrote through
keyrings.cryptfile is converted on the first unlock (see :mod:`mbxtui.core.legacy_secret_file`).

Format version 1 is a JSON object::

    {"format": "mbxtui-secrets", "version": 1,
     "kdf": {"algorithm": "argon2id", "salt": B64, "time_cost": 15, "memory_cost": 65536, "parallelism": 2},
     "check": SEALED,
     "entries": {SERVICE: {NAME: SEALED, ...}, ...}}

where SEALED is ``{"salt": B64, "nonce": B64, "ciphertext": B64}``: AES-256-GCM (the tag ends the
ciphertext) under the entry's own key, HKDF-SHA256(file key, entry salt). The file key is
Argon2id(master password, the kdf salt and costs). The associated data of an entry is the format,
its version, the service and the name, so an entry moved to another name does not decrypt.
"check" seals a fixed text: it tells a wrong master password from a damaged entry.

Argon2 runs once per file, not once per entry: it is slow on purpose (about 0.4 s here), and
keyrings.cryptfile's salt per entry made every entry another process had written cost one more
derivation to read. Each entry still has a salt of its own, for HKDF (microseconds), so each entry
has its own AES key: the GCM limit of 2^32 random nonces under one key never comes near, however
often tokens are rewritten.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import filelock
from argon2.exceptions import HashingError
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mbxtui.core.legacy_secret_file import LegacyFileError, LegacySecretFile, LegacyWrongPassword
from mbxtui.core.paths import ensure_private_dir

FORMAT_NAME = "mbxtui-secrets"
FORMAT_VERSION = 1
KDF_ALGORITHM = "argon2id"
# keyrings.cryptfile's costs, which mbxtui used until now: a stolen file is as hard to open as
# before, and a derivation still takes about 0.4 s here. Kept in the file, so they can change.
TIME_COST = 15
MEMORY_COST = 2**16  # KiB: 64 MiB
PARALLELISM = 2
SALT_LENGTH = 16
NONCE_LENGTH = 12
KEY_LENGTH = 32
CHECK_TEXT = b"mbxtui master password check"
ENTRY_KEY_INFO = b"mbxtui-secrets entry key"
LOCK_TIMEOUT = 60.0  # seconds; a change holds the lock for milliseconds
BACKUP_SUFFIX = ".cryptfile-backup"

_Stamp = tuple[int, int, int]


class SecretFileError(Exception):
    """The file cannot be read or changed. The message names the problem, never a secret."""


class UnreadableSecretFile(SecretFileError):
    """The file is not one mbxtui can read: damaged, not a secrets file, or from a newer mbxtui."""


class WrongPassword(SecretFileError):
    """The master password does not open the file."""


class DamagedEntry(SecretFileError):
    """An entry does not pass authentication: it was altered, or moved from another name."""


@dataclass(frozen=True)
class KeyDerivation:
    """How the file key comes from the master password."""

    salt: bytes
    time_cost: int = TIME_COST
    memory_cost: int = MEMORY_COST
    parallelism: int = PARALLELISM

    def derive(self, password: str) -> bytes:
        try:
            return hash_secret_raw(
                secret=password.encode("utf-8"),
                salt=self.salt,
                time_cost=self.time_cost,
                memory_cost=self.memory_cost,
                parallelism=self.parallelism,
                hash_len=KEY_LENGTH,
                type=Type.ID,
            )
        except HashingError as exc:
            raise UnreadableSecretFile(f"its key derivation settings are refused by Argon2 ({exc})") from None


@dataclass(frozen=True)
class Sealed:
    """One encrypted value, with the salt of its key and its nonce."""

    salt: bytes
    nonce: bytes
    ciphertext: bytes

    @classmethod
    def seal(cls, file_key: bytes, plaintext: bytes, associated_data: bytes) -> Sealed:
        salt, nonce = os.urandom(SALT_LENGTH), os.urandom(NONCE_LENGTH)
        return cls(salt, nonce, AESGCM(_entry_key(file_key, salt)).encrypt(nonce, plaintext, associated_data))

    def open(self, file_key: bytes, associated_data: bytes) -> bytes:
        """The plaintext; raises cryptography's InvalidTag when the key or the data do not match."""
        return AESGCM(_entry_key(file_key, self.salt)).decrypt(self.nonce, self.ciphertext, associated_data)

    def to_json(self) -> dict[str, str]:
        return {name: base64.b64encode(getattr(self, name)).decode("ascii") for name in ("salt", "nonce", "ciphertext")}

    @classmethod
    def from_json(cls, value: dict[str, str]) -> Sealed:
        salt, nonce, ciphertext = (_from_base64(value[name]) for name in ("salt", "nonce", "ciphertext"))
        if len(nonce) != NONCE_LENGTH:
            raise ValueError(f"a nonce of {len(nonce)} bytes, not {NONCE_LENGTH}")
        return cls(salt, nonce, ciphertext)


def _entry_key(file_key: bytes, salt: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_LENGTH, salt=salt, info=ENTRY_KEY_INFO).derive(file_key)


def _from_base64(value: str) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"base64 text expected, not {type(value).__name__}")
    return base64.b64decode(value, validate=True)


def entry_associated_data(service: str, name: str) -> bytes:
    return json.dumps([FORMAT_NAME, FORMAT_VERSION, service, name]).encode("ascii")


CHECK_ASSOCIATED_DATA = json.dumps([FORMAT_NAME, FORMAT_VERSION, "check"]).encode("ascii")


@dataclass
class SecretFileContent:
    """The whole file, parsed; values stay sealed until asked for."""

    kdf: KeyDerivation
    check: Sealed
    entries: dict[tuple[str, str], Sealed] = field(default_factory=dict)

    @classmethod
    def new(cls, password: str) -> tuple[SecretFileContent, bytes]:
        """An empty file for this master password, and its file key."""
        kdf = KeyDerivation(os.urandom(SALT_LENGTH))
        file_key = kdf.derive(password)
        return cls(kdf, Sealed.seal(file_key, CHECK_TEXT, CHECK_ASSOCIATED_DATA)), file_key

    def opens_with(self, file_key: bytes) -> bool:
        try:
            return hmac.compare_digest(self.check.open(file_key, CHECK_ASSOCIATED_DATA), CHECK_TEXT)
        except InvalidTag:
            return False

    def to_bytes(self) -> bytes:
        entries: dict[str, dict[str, dict[str, str]]] = {}
        for (service, name), sealed in sorted(self.entries.items()):
            entries.setdefault(service, {})[name] = sealed.to_json()
        document = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "kdf": {
                "algorithm": KDF_ALGORITHM,
                "salt": base64.b64encode(self.kdf.salt).decode("ascii"),
                "time_cost": self.kdf.time_cost,
                "memory_cost": self.kdf.memory_cost,
                "parallelism": self.kdf.parallelism,
            },
            "check": self.check.to_json(),
            "entries": entries,
        }
        return json.dumps(document, indent=1).encode("ascii") + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> SecretFileContent:
        try:
            document = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UnreadableSecretFile(f"it is not valid JSON ({exc})") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
            raise UnreadableSecretFile(f"it is JSON but not in the {FORMAT_NAME!r} format")
        version = document.get("version")
        if type(version) is not int:
            raise UnreadableSecretFile("it has no format version")
        if version > FORMAT_VERSION:
            raise UnreadableSecretFile(
                f"it is in format version {version}, written by a newer mbxtui; this one reads "
                f"version {FORMAT_VERSION}"
            )
        if version < FORMAT_VERSION:
            raise UnreadableSecretFile(f"format version {version} does not exist")
        try:
            settings = document["kdf"]
            if settings["algorithm"] != KDF_ALGORITHM:
                raise ValueError(f"key derivation {settings['algorithm']!r} is not {KDF_ALGORITHM!r}")
            costs = [settings[name] for name in ("time_cost", "memory_cost", "parallelism")]
            if any(type(cost) is not int or cost < 1 for cost in costs):
                raise ValueError(f"key derivation costs {costs} are not positive integers")
            kdf = KeyDerivation(_from_base64(settings["salt"]), *costs)
            check = Sealed.from_json(document["check"])
            entries = {
                (service, name): Sealed.from_json(sealed)
                for service, names in document["entries"].items()
                for name, sealed in names.items()
            }
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as exc:
            raise UnreadableSecretFile(f"it is damaged ({type(exc).__name__}: {exc})") from None
        return cls(kdf, check, entries)


@dataclass(frozen=True)
class Conversion:
    """What the first unlock of a keyrings.cryptfile file did."""

    backup_path: Path
    entry_count: int


class EncryptedSecretFile:
    """The encrypted secrets file at ``path``, opened with a master password by :meth:`unlock`.

    Speed (measured here with 1,000 entries, 2 cores at load 6): the file key is derived once per
    unlock and kept (a derivation takes 0.4 s on an idle machine, 2 s at that load), so a read
    then takes about 20 µs and a change 35 ms (it parses, writes and fsyncs the whole file).
    keyrings.cryptfile parsed its whole file again for every read (12–15 ms with 1,000 passwords);
    this format parses in 7 ms, and since every change replaces the file, the parsed file is kept
    until its inode, size or time change; values are decrypted one at a time as they are read.

    Several processes (the console and command-line runs) may change the file at once: every
    change takes a lock on the companion ``.lock`` file (filelock), reads the file afresh, and
    replaces it atomically (a temporary file, fsync, rename), so a reader never sees it half
    written and no update is lost. The file, its lock and its backup are owner-only (0600), in a
    directory created owner-only (0700).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(f"{self.path.name}.lock")
        self._file_lock = filelock.FileLock(self.lock_path, mode=0o600, timeout=LOCK_TIMEOUT)
        self._thread_lock = threading.RLock()
        self._password: str | None = None
        self._file_key: bytes | None = None
        self._file_key_kdf: KeyDerivation | None = None
        self._content: SecretFileContent | None = None
        self._content_stamp: _Stamp | None = None

    def is_initialised(self) -> bool:
        """Whether the file exists (False: it is new, or empty).

        Raises UnreadableSecretFile when it is not a secrets file mbxtui can read, in either format.
        """
        found = _read(self.path)
        if found is None:
            return False
        data, _ = found
        if _is_legacy(data):
            _parse_legacy(data)
        else:
            SecretFileContent.from_bytes(data)
        return True

    def matches_password(self, password: str) -> bool:
        """Whether ``password`` is the master password the file was unlocked with."""
        return self._password is not None and hmac.compare_digest(password.encode(), self._password.encode())

    def unlock(self, password: str) -> Conversion | None:
        """Open the file with the master password, creating it when there is none.

        A file in keyrings.cryptfile's format is converted, its former content kept in a backup
        beside it; the Conversion says where. Raises WrongPassword (then nothing changed),
        UnreadableSecretFile, DamagedEntry (an entry of an old file does not decrypt: nothing is
        converted), SecretFileError or OSError.
        """
        with self._thread_lock:
            while True:
                found = _read(self.path)
                if found is None:
                    with self._locked():
                        if _read(self.path) is not None:
                            continue  # another process created it meanwhile: open that one
                        content, file_key = SecretFileContent.new(password)
                        self._write(content)
                    self._remember(password, content.kdf, file_key)
                    return None
                data, stamp = found
                if _is_legacy(data):
                    conversion = self._convert(data, password)
                    if conversion is None:
                        continue  # changed meanwhile: look again
                    _make_owner_only(self.path)
                    return conversion
                content = SecretFileContent.from_bytes(data)
                file_key = content.kdf.derive(password)
                if not content.opens_with(file_key):
                    raise WrongPassword("the master password does not open it")
                self._remember(password, content.kdf, file_key)
                self._content, self._content_stamp = content, stamp
                _make_owner_only(self.path)
                return None

    def get(self, service: str, name: str) -> str | None:
        with self._thread_lock:
            self._check_unlocked()
            content = self._current_content()
            if content is None:
                return None
            sealed = content.entries.get((service, name))
            if sealed is None:
                return None
            return self._open(sealed, self._key_for(content), service, name)

    def set(self, service: str, name: str, value: str) -> None:
        plaintext = value.encode("utf-8")
        with self._thread_lock, self._locked():
            self._check_unlocked()
            content, file_key = self._content_to_change()
            content.entries[(service, name)] = Sealed.seal(file_key, plaintext, entry_associated_data(service, name))
            self._write(content)

    def delete(self, service: str, name: str) -> bool:
        """Remove the entry; False when there was none."""
        with self._thread_lock, self._locked():
            self._check_unlocked()
            found = _read(self.path)
            if found is None:
                return False
            content = self._parse_current(found[0])
            self._key_for(content)  # only a file this master password opens is changed
            if content.entries.pop((service, name), None) is None:
                return False
            self._write(content)
            return True

    # -- inside -----------------------------------------------------------------------------------

    def _check_unlocked(self) -> None:
        if self._password is None:
            raise SecretFileError("it has not been unlocked with the master password")

    def _remember(self, password: str, kdf: KeyDerivation, file_key: bytes) -> None:
        self._password, self._file_key_kdf, self._file_key = password, kdf, file_key

    def _key_for(self, content: SecretFileContent) -> bytes:
        """The file key of ``content``: the kept one, unless another process replaced the file by
        a new one (its own salt), which must open with the same master password."""
        if content.kdf == self._file_key_kdf and self._file_key is not None:
            return self._file_key
        assert self._password is not None
        file_key = content.kdf.derive(self._password)
        if not content.opens_with(file_key):
            raise WrongPassword("it was replaced by a file the master password does not open")
        self._file_key_kdf, self._file_key = content.kdf, file_key
        return file_key

    @staticmethod
    def _open(sealed: Sealed, file_key: bytes, service: str, name: str) -> str:
        try:
            return sealed.open(file_key, entry_associated_data(service, name)).decode("utf-8")
        except (InvalidTag, UnicodeDecodeError):
            raise DamagedEntry(
                f"the entry {name!r} does not pass authentication: the file was altered, or entries "
                "were moved between names; set that secret again"
            ) from None

    def _current_content(self) -> SecretFileContent | None:
        stamp = _stamp(self.path)
        if stamp is None:
            self._content, self._content_stamp = None, None
        elif self._content is None or stamp != self._content_stamp:
            found = _read(self.path)
            if found is None:
                self._content, self._content_stamp = None, None
            else:
                self._content, self._content_stamp = self._parse_current(found[0]), found[1]
        return self._content

    def _content_to_change(self) -> tuple[SecretFileContent, bytes]:
        """The file as it is now (the lock held), and its key; a new file when it is gone."""
        found = _read(self.path)
        if found is None:
            assert self._password is not None
            content, file_key = SecretFileContent.new(self._password)
            self._remember(self._password, content.kdf, file_key)
            return content, file_key
        content = self._parse_current(found[0])
        return content, self._key_for(content)

    @staticmethod
    def _parse_current(data: bytes) -> SecretFileContent:
        if _is_legacy(data):
            raise UnreadableSecretFile(
                "it was replaced by a file in keyrings.cryptfile's format; start mbxtui again to convert it"
            )
        return SecretFileContent.from_bytes(data)

    def _convert(self, data: bytes, password: str) -> Conversion | None:
        """Rewrite a keyrings.cryptfile file in this format; None when the file changed before
        the lock was taken. The password is checked before anything is written or locked."""
        try:
            secrets = _parse_legacy(data).secrets(password)
        except LegacyWrongPassword:
            raise WrongPassword("the master password does not open it") from None
        except LegacyFileError as exc:
            raise DamagedEntry(f"{exc}; nothing was converted") from None
        content, file_key = SecretFileContent.new(password)
        for (service, name), value in secrets.items():
            content.entries[(service, name)] = Sealed.seal(
                file_key, value.encode("utf-8"), entry_associated_data(service, name)
            )
        with self._locked():
            found = _read(self.path)
            if found is None or found[0] != data:
                return None
            # The backup first: until the rename below the old file stays in place, whole.
            backup_path = self._write_backup(data)
            self._write(content)
        self._remember(password, content.kdf, file_key)
        return Conversion(backup_path, len(secrets))

    def _write_backup(self, data: bytes) -> Path:
        number = 0
        while True:
            backup_path = self.path.with_name(f"{self.path.name}{BACKUP_SUFFIX}{f'.{number}' if number else ''}")
            existing = _read(backup_path)
            if existing is None:
                _replace_file(backup_path, data)
                return backup_path
            if existing[0] == data:  # left by a conversion that stopped before its end
                _make_owner_only(backup_path)
                return backup_path
            number += 1

    def _write(self, content: SecretFileContent) -> None:
        """Replace the file by ``content`` (the lock held) and keep it as the parsed file."""
        _replace_file(self.path, content.to_bytes())
        self._content, self._content_stamp = content, _stamp(self.path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        ensure_private_dir(self.path.parent)
        try:
            self._file_lock.acquire()
        except filelock.Timeout:
            raise SecretFileError(
                f"another process has held the lock {self.lock_path} for over {LOCK_TIMEOUT:.0f} s"
            ) from None
        try:
            yield
        finally:
            self._file_lock.release()


def _is_legacy(data: bytes) -> bool:
    # This format is a JSON object; keyrings.cryptfile's is an INI file, which starts with a section.
    return not data.lstrip().startswith(b"{")


def _parse_legacy(data: bytes) -> LegacySecretFile:
    try:
        return LegacySecretFile.parse(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise UnreadableSecretFile("it is neither JSON nor INI text") from None
    except LegacyFileError as exc:
        raise UnreadableSecretFile(str(exc)) from None


def _stamp(path: Path) -> _Stamp | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


def _read(path: Path) -> tuple[bytes, _Stamp] | None:
    """The file's bytes and the stamp of what was read; None when it is missing or empty."""
    try:
        with open(path, "rb") as file:
            data = file.read()
            info = os.fstat(file.fileno())
    except FileNotFoundError:
        return None
    if not data.strip():
        return None
    return data, (info.st_ino, info.st_mtime_ns, info.st_size)


def _replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a new owner-only file beside ``path``, then rename it over ``path``: on any
    failure (a full disk, a read-only file system) ``path`` stays as it was and the temporary file
    goes; the OSError then names ``path``, not the temporary file (or nothing, as a failed write)."""
    try:
        fd, temporary_path = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    try:
        with os.fdopen(fd, "wb") as temporary_file:
            temporary_file.write(data)
            temporary_file.flush()
            os.fsync(temporary_file.fileno())
        os.replace(temporary_path, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary_path)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    # The rename reaches the disk with the directory; Windows cannot open a directory for this.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _make_owner_only(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o600)
