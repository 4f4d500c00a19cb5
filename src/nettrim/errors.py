"""The one exception type users see: a one-line message saying what is wrong and what to do."""


class NettrimError(ValueError):
    """Bad input or an impossible request. The message is a single line meant for the user."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`NettrimError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise NettrimError(message)
