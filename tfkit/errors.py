"""User-facing errors.

A `UserError` is something the user can fix (a bad config, a missing file, data that does
not fit the model). The CLI prints its message on one line to stderr and exits with
status 2; any other exception is an internal error (status 1).
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by user input; its message says what to change.

    Args:
        message: what is wrong, naming the file, field or argument, what was expected
            and what was received.
    """

    exit_code = 2


def did_you_mean(name: str, valid: list[str] | tuple[str, ...]) -> str:
    """Return ' Did you mean `x`?' for the closest valid name, or ''."""
    import difflib

    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" Did you mean `{close[0]}`?" if close else ""


def unknown_name(kind: str, name: str, valid) -> UserError:
    """A `UserError` for an unknown registry name that lists the valid ones."""
    valid = sorted(valid)
    plural = f"{kind}es" if kind.endswith("s") else f"{kind}s"
    return UserError(
        f"Unknown {kind} `{name}`.{did_you_mean(name, valid)} Valid {plural}: {', '.join(valid)}"
    )
