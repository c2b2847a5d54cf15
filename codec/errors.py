"""Errors the codec reports to its users."""

from toolkit.errors import InputError


class CodecError(InputError):
    """Bad input or a checkpoint that does not fit; the message is one line meant for the user."""
