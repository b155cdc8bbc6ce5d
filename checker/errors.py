"""User-facing errors: every one is reported as a single line and exit status 2."""


class CheckerError(Exception):
    """Bad input or an unusable request; the message says what is wrong and how to fix it."""


class InstanceError(CheckerError):
    """An instance (JSON file, preset or Python object) that fails validation."""

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        msg = f"{field}: {problem}" if field else problem
        if fix:
            msg += f" ({fix})"
        super().__init__(msg)
