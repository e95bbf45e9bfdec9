"""Two kinds of failure a user can see: bad input (exit 2) and a failed operation (exit 1)."""

from __future__ import annotations


class UserError(Exception):
    """Bad input: printed as one line naming the file and field, exit status 2."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None,
                 line: int | None = None):
        self.message = message
        self.file = file
        self.field = field
        self.line = line
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "")
        if self.field:
            where = f"{where}: {self.field}" if where else self.field
        return f"{where}: {self.message}" if where else self.message


class OperationError(Exception):
    """A well-formed request that failed while running (a bake, a test, a VM): exit 1."""

    exit_code = 1
