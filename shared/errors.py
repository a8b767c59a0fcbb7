"""Errors a user can act on. The CLIs print them as one line and exit non-zero."""


class DcignError(Exception):
    """A problem with the user's input or files, reported without a traceback."""


class StoreError(DcignError):
    """A store that is missing, unreadable, of another schema, or incompatible with a request."""


class ModelFileError(DcignError):
    """An object-model file (e.g. a Basel Face Model) that cannot be read."""
