class LabError(RuntimeError):
    """The mail lab could not start or is used wrongly; the message says what to do."""
