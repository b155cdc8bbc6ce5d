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


#: Characters of a user's value quoted in a message; a longer value is shown as a prefix.
QUOTE_CHARS = 40


def quote(value: object, limit: int = QUOTE_CHARS, *, quotes: bool = True) -> str:
    """A value for an error message: its repr (or text), cut to ``limit`` characters.

    A 10,000-digit number or a pasted document must not flood the terminal: the
    message shows a prefix and the full length.
    """
    text = repr(value) if quotes else str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(str(value))} characters)"
