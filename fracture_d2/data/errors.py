"""Errors raised on bad input data; the message always names the file and the row or id."""


class DataError(ValueError):
    """Bad input data. ``str(err)`` is one line: ``FILE[:ROW]: what is wrong (what to do)``."""

    def __init__(self, path, message: str, row: int | str | None = None):
        where = f"{path}:{row}" if row is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path, self.row, self.reason = str(path), row, message
