"""The one error analysis raises for bad input; the command line prints it without a traceback."""


class AnalysisError(Exception):
    pass


class MissingDependency(AnalysisError):
    """A package a part of the report needs is not installed: that part is left out, the rest goes on."""
