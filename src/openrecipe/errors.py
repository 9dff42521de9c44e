"""All openrecipe exceptions. A message names the file, the dotted field or path, what was
found and what was expected, so a user can fix the input without reading our code."""


class OpenRecipeError(Exception):
    """Base class: the CLI prints these without a traceback and exits 2."""


class RecipeError(OpenRecipeError):
    """A recipe or override file is malformed, invalid, or names a path outside the project."""


class StageInputError(OpenRecipeError):
    """A stage input is missing, partial or does not match its upstream manifest."""


class LineageError(OpenRecipeError):
    """A manifest chain cannot be followed (missing or altered manifest)."""


class AttestationError(LineageError):
    """A signed attestation (release lock, absence certificate) or a signing key is unsigned,
    badly signed, signed by an untrusted key, malformed, or cannot be read."""


class SourceError(OpenRecipeError):
    """A data source cannot be fetched or does not match its pinned hash."""
