"""Errors raised for bad benchmark input."""


class DataError(ValueError):
    """Bad benchmark input; the message names the file, line (or row) and field."""

    def __init__(self, message: str, path=None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line
