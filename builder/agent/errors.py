"""The agent's one error type: a failed boot is reported as one line naming what failed."""


class AgentError(Exception):
    pass
