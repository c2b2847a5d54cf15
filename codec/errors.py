"""Errors the codec reports to its users."""


class CodecError(ValueError):
    """Bad input or a checkpoint that does not fit; the message is one line meant for the user."""
