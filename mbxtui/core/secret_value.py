"""A secret in memory: a password or token read from the keyring travels in a ``Secret`` until the
moment it is sent, so that a ``repr``, a log line or a traceback's local variables show ``***``."""

from __future__ import annotations

from typing import Any, NoReturn

CONCEALED = "***"


class Secret:
    """Holds one secret. ``reveal()`` gives the text, to be called where it is sent and nowhere
    else. It is never equal to anything by accident (comparing raises), and never pickled."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a Secret holds text, not {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({CONCEALED!r})"

    def __str__(self) -> str:
        return CONCEALED

    def __format__(self, spec: str) -> str:
        return CONCEALED

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> NoReturn:
        raise TypeError("secrets are not compared: compare what reveal() gives where that is meant")

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret is not pickled")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self


def as_secret(value: Secret | str | None) -> Secret:
    """``value`` as a Secret (an empty one for None)."""
    if isinstance(value, Secret):
        return value
    return Secret(value or "")
