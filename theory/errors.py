"""The one exception type for bad input, shared by every layer and the CLI."""


class InputError(ValueError):
    """Bad input: the message is one line naming the value and what is allowed."""
