"""Errors a user can act on. The CLIs print them as one line and exit non-zero."""


class DcignError(Exception):
    """A problem with the user's input or files, reported without a traceback."""


class StoreError(DcignError):
    """A store that is missing, unreadable, of another schema, or incompatible with a request."""


class ModelFileError(DcignError):
    """An object-model file (e.g. a Basel Face Model) that cannot be read."""


class DamagedMinibatch(StoreError):
    """A minibatch whose marker says complete but which cannot be read back as written."""

    def __init__(self, split: str, factor: str, index: int, what: str, store: str):
        self.split, self.factor, self.index, self.what, self.store = (split, factor, index,
                                                                      what, store)
        super().__init__(f"{store}: {split}/{factor}/{index} is damaged: {what} (re-render "
                         f"the damaged minibatches with `dcign-render repair {store}`)")

    def __reduce__(self):  # crosses process boundaries (loader workers, Dask) intact
        return (DamagedMinibatch, (self.split, self.factor, self.index, self.what, self.store))


class StoreReadError(StoreError):
    """Storage that did not answer a read (an I/O, permission or connection error): not
    damage. Nothing in the store is known to be wrong, so the user is told to retry, not to
    run repair (which would re-render minibatches that may be intact)."""

    def __init__(self, store: str, what: str, error: BaseException | str):
        self.store, self.what = store, what
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.reason = (text.splitlines() or [""])[0][:200]
        super().__init__(f"could not read {what} of {store} ({self.reason}): a read error, "
                         "not damage; retry when the storage answers")

    def __reduce__(self):  # crosses process boundaries (loader workers, Dask) intact
        return (StoreReadError, (self.store, self.what, self.reason))
