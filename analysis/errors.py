"""The one error analysis raises for bad input; the command line prints it without a traceback."""


class AnalysisError(Exception):
    pass
