"""Exceptions raised by the services. Each message is a sentence a person can act on and never
contains a secret."""


class MbxError(Exception):
    """Base of every refusal the services make."""


class InvalidInput(MbxError):
    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class InvalidRows(MbxError):
    """Bad rows in an import: every problem, each with its line number."""

    def __init__(self, what: str, problems: list[tuple[int, str]]):
        self.problems = problems
        shown = "; ".join(f"line {line}: {text}" for line, text in problems[:20])
        more = f"; and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{what} refused, nothing imported: {len(problems)} bad row(s): {shown}{more}")


class NotFound(MbxError):
    pass


class Conflict(MbxError):
    """The record already exists, or changed since it was read."""


class PermissionDenied(MbxError):
    pass


class NotInitialised(MbxError):
    pass
