"""Errors a user can act on. The CLI prints them as one line and exits non-zero."""


class PolicylabError(Exception):
    """Base of every error caused by input: bad names, configs, files or budgets."""


class UnknownNameError(PolicylabError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ConfigError(PolicylabError, ValueError):
    pass


class CheckpointError(PolicylabError):
    pass


class RunDirError(PolicylabError):
    pass


class NonFiniteLossError(PolicylabError, FloatingPointError):
    pass
