"""The one error type for bad input: the CLI turns it into exit status 2."""

from __future__ import annotations


class InvalidInputError(ValueError):
    """Input that cannot be used as it is; ``problems`` holds one line per problem.

    Each line names the file it is about, so a user can fix every problem in one pass.
    """

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))
