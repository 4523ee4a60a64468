"""Errors a user can fix: the scripts print them as one line (``error: ...``) and exit with code 2."""


class UsageError(ValueError):
    """A bad flag or input file; scripts print it as one line and exit with code 2."""


class ExportError(UsageError):
    """A model that could not be exported or whose export does not reproduce the dygraph outputs."""
