"""The one exception type for user mistakes.

Anything raised as `EdgekdError` is shown by the CLI as a single line and exit code 2; every
other exception is a bug and keeps its traceback.
"""


class EdgekdError(Exception):
    """A problem with the user's input (recipe, data, model folder, artifact, target)."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type name when empty), cut to `limit`:
    what a one-line error shows of a library's multi-line message."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:limit]
