"""The error every package raises for input it cannot use (a file, an option, weights that do not fit)."""


class InputError(ValueError):
    """Bad input; the message is one line meant for the user. ``codec.CodecError`` is the codec's kind of it."""
