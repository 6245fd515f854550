"""Errors a user can cause. The CLI prints their message (no traceback) and exits non-zero."""


class PosekitError(Exception):
    """Base class: the message must say what went wrong and what to do about it."""


class WeightsError(PosekitError):
    """Weights are missing, unverifiable, or cannot be fetched."""


class UnknownModelError(PosekitError):
    """A model name that the zoo does not know."""


class InputError(PosekitError):
    """An input path or file that cannot be used."""


class CheckpointError(PosekitError):
    """A checkpoint file that cannot be used."""


class OptionError(PosekitError, ValueError):
    """An option value a pipeline refuses (a ValueError too, for callers that build options in code)."""


class OutputError(PosekitError):
    """An output path posekit will not write: a device, a pipe, a link, or a folder another run holds."""
