"""Secrets (mailbox and profile passwords, OAuth tokens): the only module that touches the keyring.

Every secret lives under the keyring service ``mbxtui`` with a key built by the ``*_key()``
functions below, e.g. ``mailbox/42/password``. Values never appear in logs, exception messages or
``repr()``.

Which store holds them is decided by :meth:`SecretStore.open`:

* the OS keyring chosen by the ``keyring`` library (Secret Service, macOS Keychain, Windows
  Credential Manager, KWallet), honouring ``PYTHON_KEYRING_BACKEND`` and ``keyringrc.cfg``;
* otherwise, or when ``MBXTUI_KEYRING=file`` is set, an encrypted file ``secrets.cfg`` in the data
  directory (mbxtui's own format, Argon2id + AES-256-GCM, owner-only permissions: see
  :mod:`mbxtui.core.secret_file`). It stays locked until :meth:`SecretStore.unlock` receives the
  master password, which the product asks for itself. A file that earlier versions wrote through
  keyrings.cryptfile is converted by that unlock, and a backup of it kept.

``MBXTUI_MASTER_PASSWORD`` supplies that master password without asking: it is meant for
automation (scripts, the CLI in cron jobs), since an environment variable is visible to other
processes of the same user and may end up in shell history. :meth:`SecretStore.open` removes it
from the environment once read (``os.environ`` and the C environment, which child processes
inherit); ``/proc/PID/environ`` keeps showing the environment the process started with.

A backend that keeps secrets unencrypted (such as keyrings.alt's ``PlaintextKeyring``) is used only
when it is configured by name (``PYTHON_KEYRING_BACKEND`` or ``keyringrc.cfg``), with
``SecretStore.plaintext`` set and a warning to show. The keyring library's automatic choice would
take one merely because it is installed (keyrings.alt often comes along with other tools): mbxtui
leaves them out of that choice, so the encrypted file is used instead.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Callable, TypeVar

import keyring
import keyring.backend
import keyring.core
import keyring.errors
from keyring.backends import chainer, fail, null

from mbxtui.core import secret_file
from mbxtui.core.errors import MbxError

log = logging.getLogger(__name__)
T = TypeVar("T")

SERVICE = "mbxtui"
KEYRING_CHOICE_ENV = "MBXTUI_KEYRING"
MASTER_PASSWORD_ENV = "MBXTUI_MASTER_PASSWORD"
SECRETS_FILE_NAME = "secrets.cfg"
# Where the conversion from keyrings.cryptfile's format keeps the old file
SECRETS_BACKUP_NAME = f"{SECRETS_FILE_NAME}{secret_file.BACKUP_SUFFIX}"

_FRIENDLY_BACKEND_NAMES = {
    "keyring.backends.SecretService.Keyring": "Secret Service",
    "keyring.backends.libsecret.Keyring": "Secret Service (libsecret)",
    "keyring.backends.macOS.Keyring": "macOS Keychain",
    "keyring.backends.Windows.WinVaultKeyring": "Windows Credential Manager",
    "keyring.backends.kwallet.DBusKeyring": "KWallet",
}

# Serialises the calls to OS keyring backends in the process: keyring's backend selection is
# global state.
_BACKEND_LOCK = threading.Lock()
# How long an OS keyring call is waited for. Measured here: gnome-keyring answers in 10-90 ms, a
# stopped one activated again by D-Bus in about 0.1 s; a frozen one (SIGSTOP, or a prompt nobody
# answers) never, and the Secret Service library waits for it without a timeout (over 100 s seen),
# holding _BACKEND_LOCK: every other thread's call waited behind it.
OS_KEYRING_ANSWER_SECONDS = 10.0
# The call that did not answer in time, while it still runs: until it ends, calls fail at once.
_unanswered: threading.Event | None = None


class SecretsError(MbxError):
    """A secret could not be stored or read. The message names the problem, never a secret."""


class SecretsLocked(SecretsError):
    """The encrypted file has not been unlocked with the master password yet."""


class WrongMasterPassword(SecretsError):
    """The master password does not open the encrypted file."""


class KeyringUnavailable(SecretsError):
    """The store could be read before and no longer can: the encrypted file was deleted or
    re-encrypted with another master password, or the OS keyring stopped answering. The message
    says what happened and what to do; nothing is written to a file that could not be read."""


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


class SecretStore:
    """Where mbxtui keeps secrets. Thread-safe; obtain one with :meth:`open`.

    ``backend_name`` describes the store for people; ``plaintext`` is True when the store keeps
    secrets unencrypted; ``warning`` is a sentence to show the operator (plaintext storage, an OS
    keyring that failed, an encrypted file left unused), or None. ``notice`` is a sentence to show
    once after :meth:`unlock` (the encrypted file was converted from keyrings.cryptfile's format),
    or None.
    """

    def __init__(
        self,
        backend: keyring.backend.KeyringBackend | secret_file.EncryptedSecretFile,
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
        self.notice: str | None = None
        self._file = backend if isinstance(backend, secret_file.EncryptedSecretFile) else None
        # The encrypted file has locks of its own; an OS keyring backend is used by one thread at
        # a time, since keyring's choice of backend is global state.
        self._lock = threading.RLock() if self._file is not None else _BACKEND_LOCK
        self._unlocked = self._file is None
        self._creating_new_file = creating_new_file
        # What each key held when last read or set, for readers that may go on with it while the
        # store cannot be read (see get).
        self._last_read: dict[str, str | None] = {}

    @classmethod
    def open(cls, data_dir: Path) -> SecretStore:
        """Pick the OS keyring, or the encrypted file in ``data_dir`` when there is none usable.

        With the encrypted file and ``MBXTUI_MASTER_PASSWORD`` set, the store is unlocked with it
        (the file is created with that password if it does not exist yet); the ``notice`` of that
        unlock, if any, is added to ``warning``. The variable is removed from the environment
        whichever store is chosen.
        """
        # Read once and taken out of the environment: child processes do not inherit it, and
        # nothing later in this process finds it there.
        master_password = os.environ.pop(MASTER_PASSWORD_ENV, None)
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
        if master_password:
            try:
                store.unlock(master_password)
            except WrongMasterPassword:
                raise WrongMasterPassword(
                    f"{MASTER_PASSWORD_ENV} does not unlock {_display_path(store._file_path)}"
                ) from None
            if store.notice:
                store.warning = f"{store.warning} {store.notice}" if store.warning else store.notice
                store.notice = None
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
        file = secret_file.EncryptedSecretFile(file_path)
        try:
            initialised = file.is_initialised()
        except (secret_file.SecretFileError, OSError) as exc:
            raise SecretsError(
                f"{_display_path(file_path)} is not an encrypted keyring file mbxtui can read "
                f"({type(exc).__name__}: {exc}); move it away to start a new one"
            ) from exc
        return cls(
            file,
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
        assert self._file is not None
        return self._file.path

    def unlock(self, master_password: str) -> None:
        """Open the encrypted file (creating it if new). Does nothing for an OS keyring.

        A file in the format of earlier versions (keyrings.cryptfile's) is converted, and
        ``notice`` says where its backup is. A wrong master password changes nothing. Once
        unlocked, a different password raises WrongMasterPassword and the store stays unlocked.
        """
        if self._file is None:
            return
        if not isinstance(master_password, str) or not master_password.strip():
            raise SecretsError("The master password must not be empty.")
        path = _display_path(self._file_path)
        with self._lock:
            if self._unlocked:
                if not self._file.matches_password(master_password):
                    raise WrongMasterPassword(f"Wrong master password for {path}.")
                return
            try:
                conversion = self._file.unlock(master_password)
            except secret_file.WrongPassword:
                raise WrongMasterPassword(f"Wrong master password for {path}.") from None
            except secret_file.SecretFileError as exc:
                raise SecretsError(f"Could not open {path}: {exc}") from exc
            except OSError as exc:
                raise SecretsError(f"Could not open {path}: {exc.strerror}") from exc
            self._unlocked = True
            if conversion is not None:
                self.notice = (
                    f"{path} was converted from the keyrings.cryptfile format of earlier mbxtui "
                    f"versions to mbxtui's own ({conversion.entry_count} secrets). The old file is "
                    f"kept as {_display_path(conversion.backup_path)} (owner-only, same master "
                    "password): delete it once you no longer need to go back to an earlier mbxtui."
                )
                log.info("%s", self.notice)

    def set(self, key: str, value: str) -> None:
        _check_key(key)
        if not isinstance(value, str):
            raise TypeError(f"a secret must be a str, not {type(value).__name__}")
        with self._lock:
            self._check_unlocked()
            try:
                if self._file is not None:
                    self._file.set(SERVICE, key, value)
                else:
                    _answered_in_time(lambda: self._backend.set_password(SERVICE, key, value))
            except Exception as exc:
                self._last_read.pop(key, None)
                raise self._error("store", key, exc) from exc
            self._last_read[key] = value

    def get(self, key: str, *, last_read: bool = False) -> str | None:
        """The secret, or None when there is none. Raises KeyringUnavailable when the store itself
        cannot be read (see that class), unless ``last_read`` is set and this process read or set
        the key before: then what it held then (a worker goes on with the mailboxes it already
        had the secrets of while the keyring is away)."""
        _check_key(key)
        with self._lock:
            self._check_unlocked()
            try:
                if self._file is not None:
                    if not self._file.path.exists():
                        raise KeyringUnavailable(self._file_gone())
                    value = self._file.get(SERVICE, key)
                else:
                    value = _answered_in_time(lambda: self._backend.get_password(SERVICE, key))
            except KeyringUnavailable:
                if last_read and key in self._last_read:
                    return self._last_read[key]
                raise
            except secret_file.DamagedEntry as exc:
                raise self._error("read", key, exc) from exc
            except Exception as exc:
                if last_read and key in self._last_read:
                    return self._last_read[key]
                raise KeyringUnavailable(self._unreadable(exc)) from exc
            self._last_read[key] = value
            return value

    def _file_gone(self) -> str:
        path = _display_path(self._file_path)
        return (f"the encrypted keyring file {path} was deleted or moved while mbxtui ran: put it back (from a "
                f"backup), or set the passwords again with `mbxtui mailbox set-password`; mbxtui tries again later")

    def _unreadable(self, exc: Exception) -> str:
        if self._file is None:
            return (f"the {self.backend_name} could not be read ({type(exc).__name__}: {exc}): start the keyring "
                    f"service again (gnome-keyring-daemon, or log in to the desktop session); mbxtui tries again later")
        path = _display_path(self._file_path)
        if isinstance(exc, secret_file.WrongPassword):
            return (f"the encrypted keyring file {path} was re-encrypted with another master password while mbxtui "
                    f"ran: restart mbxtui with the new master password; the file is left as it is")
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"
        return (f"the encrypted keyring file {path} cannot be read now ({reason}): check it and its directory; "
                f"the file is left as it is and mbxtui tries again later")

    def delete(self, key: str) -> None:
        """Remove the secret; nothing happens if there is none."""
        _check_key(key)
        with self._lock:
            self._check_unlocked()
            self._last_read.pop(key, None)
            try:
                if self._file is not None:
                    self._file.delete(SERVICE, key)
                else:
                    _answered_in_time(lambda: self._backend.delete_password(SERVICE, key))
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


def _answered_in_time(call: Callable[[], T]) -> T:
    """``call`` (an OS keyring backend's, under _BACKEND_LOCK) on a thread of its own, waited for
    at most OS_KEYRING_ANSWER_SECONDS; TimeoutError after that, and at once while a call that did
    not answer still runs (it may end later: then calls go through again)."""
    global _unanswered
    if _unanswered is not None and not _unanswered.is_set():
        raise TimeoutError(f"it has not answered a call made over {OS_KEYRING_ANSWER_SECONDS:g} s ago")
    answered = threading.Event()
    outcome: list = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # noqa: BLE001  (handed to the caller's thread)
            outcome.append((False, exc))
        finally:
            answered.set()

    # A daemon thread: one that never returns must not keep the process from exiting.
    threading.Thread(target=run, name="mbxtui-keyring", daemon=True).start()
    if not answered.wait(OS_KEYRING_ANSWER_SECONDS):
        _unanswered = answered
        raise TimeoutError(f"no answer within {OS_KEYRING_ANSWER_SECONDS:g} s")
    succeeded, value = outcome[0]
    if not succeeded:
        raise value
    return value


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
        return None, _plaintext_left_out()
    try:
        _answered_in_time(lambda: backend.get_password(SERVICE, "availability-check"))
    except TimeoutError as exc:
        # It is there and holds the secrets, but does not answer (frozen, or waiting on a prompt):
        # the encrypted file instead would hold none of them.
        raise KeyringUnavailable(
            f"the {_describe_backend(backend)} could not be read ({type(exc).__name__}: {exc}): start the keyring "
            "service again (gnome-keyring-daemon, or log in to the desktop session), then start mbxtui again"
        ) from None
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
    # getpass() and keeps its file outside mbxtui's data directory. A plaintext backend (keyrings.alt's)
    # is never chosen for being installed: only when configured by name.
    module = type(backend).__module__
    return (not module.startswith("keyrings.cryptfile") and not _asks_for_master_password(backend)
            and not _is_plaintext(backend))


def _plaintext_left_out() -> str | None:
    """A sentence when a plaintext keyring the automatic choice left out already holds a file
    (secrets an earlier mbxtui may have kept there), else None."""
    # keyrings.alt's and keyrings.cryptfile's plaintext keyrings share one file: name the same one
    # every time.
    candidates = sorted(keyring.backend.get_all_keyring(), key=lambda b: (type(b).__module__, type(b).__qualname__))
    for candidate in candidates:
        file_path = getattr(candidate, "file_path", None)
        if not _is_plaintext(candidate) or not isinstance(file_path, (str, os.PathLike)):
            continue
        if Path(file_path).exists():
            name = _describe_backend(candidate)
            backend_class = type(candidate)
            return (
                f"{name} keeps secrets unencrypted, so mbxtui no longer uses it unless it is named: "
                f"set the passwords again (they are now kept in the encrypted file), or set "
                f"PYTHON_KEYRING_BACKEND={backend_class.__module__}.{backend_class.__qualname__} to keep using it."
            )
    return None


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
