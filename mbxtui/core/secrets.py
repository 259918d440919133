"""Secrets (mailbox and profile passwords, OAuth tokens): the only module that touches the keyring.

Every secret lives under the keyring service ``mbxtui`` with a key built by the ``*_key()``
functions below, e.g. ``mailbox/42/password``. Values never appear in logs, exception messages or
``repr()``.

Which store holds them is decided by :meth:`SecretStore.open`:

* the OS keyring chosen by the ``keyring`` library (Secret Service, macOS Keychain, Windows
  Credential Manager, KWallet), honouring ``PYTHON_KEYRING_BACKEND`` and ``keyringrc.cfg``;
* otherwise, or when ``MBXTUI_KEYRING=file`` is set, an encrypted file ``secrets.cfg`` in the data
  directory (keyrings.cryptfile: Argon2 + AES-GCM, owner-only permissions). It stays locked until
  :meth:`SecretStore.unlock` receives the master password, which the product asks for itself.

``MBXTUI_MASTER_PASSWORD`` supplies that master password without asking: it is meant for
automation (scripts, the CLI in cron jobs), since an environment variable is visible to other
processes of the same user and may end up in shell history.

A backend that keeps secrets unencrypted (such as keyrings.alt's ``PlaintextKeyring``) is used if
it is the one configured, with ``SecretStore.plaintext`` set and a warning to show.
"""

from __future__ import annotations

import configparser
import contextlib
import hmac
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backend
import keyring.core
import keyring.errors
from argon2.low_level import Type, hash_secret_raw
from Crypto.Cipher import AES
from keyring.backends import chainer, fail, null
from keyrings.cryptfile.cryptfile import CryptFileKeyring
from keyrings.cryptfile.escape import ESCAPE_FMT, LEGAL_CHARS
from keyrings.cryptfile.file_base import decodebytes, encodebytes

from mbxtui.core.errors import MbxError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so only writers within one process are serialised
    fcntl = None

log = logging.getLogger(__name__)

SERVICE = "mbxtui"
KEYRING_CHOICE_ENV = "MBXTUI_KEYRING"
MASTER_PASSWORD_ENV = "MBXTUI_MASTER_PASSWORD"
SECRETS_FILE_NAME = "secrets.cfg"

_FRIENDLY_BACKEND_NAMES = {
    "keyring.backends.SecretService.Keyring": "Secret Service",
    "keyring.backends.libsecret.Keyring": "Secret Service (libsecret)",
    "keyring.backends.macOS.Keyring": "macOS Keychain",
    "keyring.backends.Windows.WinVaultKeyring": "Windows Credential Manager",
    "keyring.backends.kwallet.DBusKeyring": "KWallet",
}

# Serialises every keyring call in the process: the encrypted file is read-modify-written on each
# change, and keyring's backend selection is global state.
_BACKEND_LOCK = threading.Lock()


class SecretsError(MbxError):
    """A secret could not be stored or read. The message names the problem, never a secret."""


class SecretsLocked(SecretsError):
    """The encrypted file has not been unlocked with the master password yet."""


class WrongMasterPassword(SecretsError):
    """The master password does not open the encrypted file."""


def mailbox_password_key(mailbox_id: int) -> str:
    return _record_key("mailbox", mailbox_id, "password")


def mailbox_token_key(mailbox_id: int) -> str:
    return _record_key("mailbox", mailbox_id, "token")


def profile_password_key(profile_id: int) -> str:
    return _record_key("profile", profile_id, "password")


def profile_token_key(profile_id: int) -> str:
    return _record_key("profile", profile_id, "token")


def _record_key(kind: str, record_id: int, secret: str) -> str:
    if isinstance(record_id, bool) or not isinstance(record_id, int):
        raise TypeError(f"{kind} id must be an int, not {type(record_id).__name__}")
    return f"{kind}/{record_id}/{secret}"


_ESCAPED_BYTES = [chr(b) if chr(b) in LEGAL_CHARS else ESCAPE_FMT % b for b in range(256)]


def escape_for_ini(value: str) -> str:
    """keyrings.cryptfile's escape of section and option names, by table: upstream escapes one
    character at a time through a generator, a fifth of a secret read."""
    return "".join(map(_ESCAPED_BYTES.__getitem__, value.encode("utf-8")))


class _EncryptedFileKeyring(CryptFileKeyring):
    """keyrings.cryptfile's keyring at a given path, faster and safe for several processes.

    Upstream derives a key (about 0.3 s at the default cost) for every read and write, because every
    entry carries its own salt. Here derived keys are remembered per salt, and the entries this
    process writes share one salt, so once unlocked reads and writes take milliseconds.

    Upstream also rewrites the file in place, so another process (the console and a command-line
    run) can read it half written or lose an update. Here every change takes an exclusive lock on
    a companion ``.lock`` file and replaces the file atomically.

    Upstream parses the whole file again for every read (12–15 ms with 1,000 passwords); since
    every change replaces the file, the parsed file is kept until its inode, size or time change.

    The file format is unchanged: upstream ``CryptFileKeyring`` reads these files and the other
    way round.
    """

    def __init__(self, file_path: Path) -> None:
        super().__init__()
        self.file_path = str(file_path)
        self._write_salt = os.urandom(16)
        self._derived_keys: dict[bytes, bytes] = {}
        self._derived_keys_password: str | None = None
        self._parsed: configparser.RawConfigParser | None = None
        self._parsed_stamp: tuple[int, int, int] | None = None

    def _current_config(self) -> configparser.RawConfigParser:
        try:
            info = os.stat(self.file_path)
            stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        except FileNotFoundError:
            stamp = None
        if self._parsed is None or stamp != self._parsed_stamp:
            config = configparser.RawConfigParser()
            if stamp is not None:
                config.read(self.file_path)
            self._parsed, self._parsed_stamp = config, stamp
        return self._parsed

    def get_password(self, service, username):
        """Upstream's read, on the kept parse of the file."""
        config = self._current_config()
        self._check_version(config)
        assoc = self._generate_assoc(service, username)
        try:
            encrypted = decodebytes(config.get(escape_for_ini(service), escape_for_ini(username)).encode())
        except (configparser.NoOptionError, configparser.NoSectionError):
            return None
        try:
            return self.decrypt(encrypted, assoc).decode("utf-8")
        except ValueError:  # entries written without associated data by old versions
            return self.decrypt(encrypted).decode("utf-8")

    def is_initialised(self) -> bool:
        """Whether the file holds a master password reference (False: it is new or empty).

        Raises ValueError or configparser.Error when the file is not a keyring this class reads.
        """
        if not os.path.exists(self.file_path) or os.path.getsize(self.file_path) == 0:
            return False
        if not self._check_file():
            raise ValueError("it has no master password reference")
        return True

    def _create_cipher(self, password, salt, nonce=None):
        if password != self._derived_keys_password:
            self._derived_keys.clear()
            self._derived_keys_password = password
        key = self._derived_keys.get(salt)
        if key is None:
            key = hash_secret_raw(
                secret=password.encode(self.password_encoding),
                salt=salt,
                time_cost=self.time_cost,
                memory_cost=self.memory_cost,
                parallelism=self.parallelism,
                hash_len=16,
                type=Type.ID,
            )
            self._derived_keys[salt] = key
        return AES.new(key, self._get_mode(self.aesmode), nonce)

    def encrypt(self, password, assoc=None):
        # Same as upstream except the salt: one per process instead of one per entry, so that the
        # derived key is reused. Each entry still gets its own random nonce.
        cipher = self._create_cipher(self.keyring_key, self._write_salt)
        if assoc is not None:
            cipher.update(assoc)
        data, mac = cipher.encrypt_and_digest(password)
        fields = dict(salt=self._write_salt, data=data, mac=mac, nonce=cipher.nonce)
        return json.dumps(
            {name: encodebytes(value).decode()[:-1] for name, value in fields.items()}
        ).encode()

    def _write_config_value(self, service, key, value):
        with self._changing_file() as config:
            section = escape_for_ini(service)
            if not config.has_section(section):
                config.add_section(section)
            config.set(section, escape_for_ini(key), value)

    def delete_password(self, service, username):
        with self._changing_file() as config:
            try:
                removed = config.remove_option(escape_for_ini(service), escape_for_ini(username))
            except configparser.NoSectionError:
                removed = False
            if not removed:
                raise keyring.errors.PasswordDeleteError("Password not found")

    @contextlib.contextmanager
    def _changing_file(self) -> Iterator[configparser.RawConfigParser]:
        """Read the file under an exclusive lock, let the caller change it, write it back."""
        lock_fd = os.open(f"{self.file_path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if fcntl is not None:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
            config = configparser.RawConfigParser()
            config.read(self.file_path)
            yield config
            self._replace_file(config)
        finally:
            os.close(lock_fd)  # releases the lock

    def _replace_file(self, config: configparser.RawConfigParser) -> None:
        directory, name = os.path.split(self.file_path)
        fd, temporary_path = tempfile.mkstemp(dir=directory, prefix=f".{name}.")  # mode 0600
        try:
            with os.fdopen(fd, "w") as temporary_file:
                config.write(temporary_file)
                temporary_file.flush()
                os.fsync(temporary_file.fileno())
            os.replace(temporary_path, self.file_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary_path)
            raise


class SecretStore:
    """Where mbxtui keeps secrets. Thread-safe; obtain one with :meth:`open`.

    ``backend_name`` describes the store for people; ``plaintext`` is True when the store keeps
    secrets unencrypted; ``warning`` is a sentence to show the operator (plaintext storage, an OS
    keyring that failed, an encrypted file left unused), or None.
    """

    def __init__(
        self,
        backend: keyring.backend.KeyringBackend,
        backend_name: str,
        *,
        plaintext: bool = False,
        warning: str | None = None,
        creating_new_file: bool = False,
    ) -> None:
        self._backend = backend
        self.backend_name = backend_name
        self.plaintext = plaintext
        self.warning = warning
        self._unlocked = not isinstance(backend, _EncryptedFileKeyring)
        self._creating_new_file = creating_new_file

    @classmethod
    def open(cls, data_dir: Path) -> SecretStore:
        """Pick the OS keyring, or the encrypted file in ``data_dir`` when there is none usable.

        With the encrypted file and ``MBXTUI_MASTER_PASSWORD`` set, the store is unlocked with it
        (the file is created with that password if it does not exist yet).
        """
        choice = os.environ.get(KEYRING_CHOICE_ENV, "").strip().lower()
        if choice not in ("", "auto", "file"):
            raise SecretsError(
                f"{KEYRING_CHOICE_ENV}={choice!r} is not understood: use 'file' for the encrypted "
                "file, or leave it unset to use the OS keyring when there is one"
            )
        secrets_file = Path(data_dir) / SECRETS_FILE_NAME
        os_keyring_problem = None
        if choice != "file":
            with _BACKEND_LOCK:
                os_keyring, os_keyring_problem = _usable_os_keyring()
            if os_keyring is not None:
                return cls._for_os_keyring(os_keyring, secrets_file)
        store = cls._for_encrypted_file(secrets_file, os_keyring_problem)
        master_password = os.environ.get(MASTER_PASSWORD_ENV)
        if master_password:
            try:
                store.unlock(master_password)
            except WrongMasterPassword:
                raise WrongMasterPassword(
                    f"{MASTER_PASSWORD_ENV} does not unlock {_display_path(store._file_path)}"
                ) from None
        return store

    @classmethod
    def _for_os_keyring(
        cls, backend: keyring.backend.KeyringBackend, secrets_file: Path
    ) -> SecretStore:
        name = _describe_backend(backend)
        # A chain of backends writes to its first member; the others are only read.
        plaintext = _is_plaintext(_members(backend)[0])
        warning = None
        if plaintext:
            warning = (
                f"{name} stores secrets unencrypted on disk. Set {KEYRING_CHOICE_ENV}=file to keep "
                "them in an encrypted file instead."
            )
        elif secrets_file.exists():
            warning = (
                f"Secrets are kept in {name}, so those in the encrypted file "
                f"{_display_path(secrets_file)} are not used. Set {KEYRING_CHOICE_ENV}=file to use "
                "that file instead."
            )
        return cls(backend, name, plaintext=plaintext, warning=warning)

    @classmethod
    def _for_encrypted_file(cls, file_path: Path, os_keyring_problem: str | None) -> SecretStore:
        backend = _EncryptedFileKeyring(file_path)
        try:
            initialised = backend.is_initialised()
        except Exception as exc:
            raise SecretsError(
                f"{_display_path(file_path)} is not an encrypted keyring file mbxtui can read "
                f"({type(exc).__name__}: {exc}); move it away to start a new one"
            ) from exc
        return cls(
            backend,
            f"encrypted file {_display_path(file_path)}",
            warning=os_keyring_problem,
            creating_new_file=not initialised,
        )

    @property
    def needs_master_password(self) -> bool:
        return not self._unlocked

    @property
    def creating_new_file(self) -> bool:
        """True while the encrypted file does not exist yet: the master password is being chosen."""
        return self._creating_new_file and not self._unlocked

    @property
    def _file_path(self) -> Path:
        return Path(self._backend.file_path)

    def unlock(self, master_password: str) -> None:
        """Open the encrypted file (creating it if new). Does nothing for an OS keyring.

        Once unlocked, a different password raises WrongMasterPassword and the store stays unlocked.
        """
        if not isinstance(self._backend, _EncryptedFileKeyring):
            return
        if not isinstance(master_password, str) or not master_password.strip():
            raise SecretsError("The master password must not be empty.")
        with _BACKEND_LOCK:
            if self._unlocked:
                if not hmac.compare_digest(
                    master_password.encode(), self._backend.keyring_key.encode()
                ):
                    raise WrongMasterPassword(
                        f"Wrong master password for {_display_path(self._file_path)}."
                    )
                return
            self._prepare_file()
            try:
                # Creates the file's password reference, or checks the password against it.
                self._backend.keyring_key = master_password
            except ValueError:
                raise WrongMasterPassword(
                    f"Wrong master password for {_display_path(self._file_path)}."
                ) from None
            except OSError as exc:
                raise SecretsError(
                    f"Could not open {_display_path(self._file_path)}: {exc.strerror}"
                ) from exc
            self._unlocked = True

    def _prepare_file(self) -> None:
        """Create the file owner-only before anything is written to it, or tighten its mode."""
        path = self._file_path
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                if os.fstat(fd).st_mode & 0o077:
                    os.fchmod(fd, 0o600)
            finally:
                os.close(fd)
        except OSError as exc:
            raise SecretsError(f"Could not create {_display_path(path)}: {exc.strerror}") from exc

    def set(self, key: str, value: str) -> None:
        _check_key(key)
        if not isinstance(value, str):
            raise TypeError(f"a secret must be a str, not {type(value).__name__}")
        with _BACKEND_LOCK:
            self._check_unlocked()
            try:
                self._backend.set_password(SERVICE, key, value)
            except Exception as exc:
                raise self._error("store", key, exc) from exc

    def get(self, key: str) -> str | None:
        _check_key(key)
        with _BACKEND_LOCK:
            self._check_unlocked()
            try:
                return self._backend.get_password(SERVICE, key)
            except Exception as exc:
                raise self._error("read", key, exc) from exc

    def delete(self, key: str) -> None:
        """Remove the secret; nothing happens if there is none."""
        _check_key(key)
        with _BACKEND_LOCK:
            self._check_unlocked()
            try:
                self._backend.delete_password(SERVICE, key)
            except keyring.errors.PasswordDeleteError:
                pass
            except Exception as exc:
                raise self._error("delete", key, exc) from exc

    def _check_unlocked(self) -> None:
        if not self._unlocked:
            raise SecretsLocked(
                f"The {self.backend_name} is locked: unlock it with the master password first."
            )

    def _error(self, verb: str, key: str, exc: Exception) -> SecretsError:
        return SecretsError(
            f"Could not {verb} {key!r} in {self.backend_name}: {type(exc).__name__}: {exc}"
        )

    def __repr__(self) -> str:
        state = "locked" if self.needs_master_password else "unlocked"
        return f"<SecretStore {self.backend_name!r} {state}{' plaintext' if self.plaintext else ''}>"


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError("a secret key must be a non-empty str")


def _usable_os_keyring() -> tuple[keyring.backend.KeyringBackend | None, str | None]:
    """The keyring backend to use, or None and why the one there is cannot be used.

    The reason is None when there is simply no OS keyring (the usual case over SSH). Must be called
    with _BACKEND_LOCK held: keyring's choice of backend is global.
    """
    try:
        keyring.core.init_backend(limit=_may_be_chosen_automatically)
        backend = keyring.get_keyring()
    except Exception as exc:
        raise SecretsError(
            f"The configured keyring backend cannot be loaded ({type(exc).__name__}: {exc}); "
            "check PYTHON_KEYRING_BACKEND and keyringrc.cfg"
        ) from exc
    members = _members(backend)
    stores_nothing = all(isinstance(member, (fail.Keyring, null.Keyring)) for member in members)
    if stores_nothing or _asks_for_master_password(backend):
        return None, None
    try:
        backend.get_password(SERVICE, "availability-check")
    except Exception as exc:
        log.warning("%s is not usable", _describe_backend(backend), exc_info=True)
        return None, (
            f"{_describe_backend(backend)} is not usable ({type(exc).__name__}: {exc}), so "
            "secrets are kept in the encrypted file instead."
        )
    return backend, None


def _may_be_chosen_automatically(backend: keyring.backend.KeyringBackend) -> bool:
    # keyrings.cryptfile registers its backends merely by being installed for the fallback; left in,
    # the automatic choice without an OS keyring would be its file keyring, which prompts with
    # getpass() and keeps its file outside mbxtui's data directory.
    module = type(backend).__module__
    return not module.startswith("keyrings.cryptfile") and not _asks_for_master_password(backend)


def _asks_for_master_password(backend: keyring.backend.KeyringBackend) -> bool:
    # The encrypted file keyrings of keyrings.cryptfile and keyrings.alt take their password through
    # a ``keyring_key`` property that falls back to getpass().
    return hasattr(type(backend), "keyring_key")


def _members(backend: keyring.backend.KeyringBackend) -> list[keyring.backend.KeyringBackend]:
    if isinstance(backend, chainer.ChainerBackend):
        return list(backend.backends)
    return [backend]


def _is_plaintext(backend: keyring.backend.KeyringBackend) -> bool:
    # keyrings.alt and keyrings.cryptfile name their unencrypted backends PlaintextKeyring.
    return "plaintext" in type(backend).__name__.lower()


def _describe_backend(backend: keyring.backend.KeyringBackend) -> str:
    if isinstance(backend, chainer.ChainerBackend):
        return " + ".join(_describe_backend(member) for member in backend.backends)
    backend_class = type(backend)
    module_parts = backend_class.__module__.split(".")
    package = ".".join(module_parts[:2] if module_parts[0] == "keyrings" else module_parts[:1])
    name = _FRIENDLY_BACKEND_NAMES.get(
        f"{backend_class.__module__}.{backend_class.__qualname__}",
        f"{backend_class.__qualname__} from {package}",
    )
    file_path = getattr(backend, "file_path", None)
    if isinstance(file_path, (str, os.PathLike)):
        name = f"{name} ({_display_path(Path(file_path))})"
    return name


def _display_path(path: Path) -> str:
    home = Path.home()
    try:
        return f"~/{path.relative_to(home)}"
    except ValueError:
        return str(path)
