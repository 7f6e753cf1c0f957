"""Sub-commands of ``buildpeer``; each module has ``register(subparsers)``."""


class CommandError(Exception):
    """A failure explained in one line; the CLI prints it and exits with code 2."""
