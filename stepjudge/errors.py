"""Exceptions with messages a user can act on (they name the file, line, field or server)."""


class StepJudgeError(Exception):
    """Base class for every error stepjudge raises on purpose."""


class DataError(StepJudgeError, ValueError):
    """Bad input data: the message names the file, the line (1-based) and the field."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None):
        where = ""
        if path is not None:
            where = str(path) + (f":{line}" if line is not None else "")
        if field is not None:
            where = f"{where} field '{field}'" if where else f"field '{field}'"
        super().__init__(f"{where}: {message}" if where else message)
        self.path, self.line, self.field = path, line, field


class ModelNotFoundError(StepJudgeError):
    """A model name could not be resolved to weights on disk or on the hub."""


class EngineError(StepJudgeError):
    """Generation failed (e.g. the server is unreachable after all retries)."""


class EngineCapabilityError(EngineError):
    """An engine was asked for an ability it lacks (e.g. token log-probs from a remote server).

    The message names the engine and the ability, and what needs it when the caller says so."""

    def __init__(self, engine: str, capability: str, *, needed_for: str | None = None):
        why = f" (needed for {needed_for})" if needed_for else ""
        super().__init__(f"{engine} has no {capability}{why}")
        self.engine, self.capability, self.needed_for = engine, capability, needed_for


class RunFolderError(StepJudgeError):
    """A run folder holds results of a different configuration and cannot be resumed."""
