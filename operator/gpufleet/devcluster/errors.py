"""Errors of the local control plane.

``DevClusterError`` is the root; the CLI prints its message on one line and exits
non-zero. ``ToolMissing`` (a needed program is not installed), ``BuildFailed`` (a Go
build step failed), ``FleetError`` (the fleet file is invalid), ``StartFailed`` (a
component did not become healthy; what was started has been stopped).
"""


class DevClusterError(Exception):
    """Base of every error the local control plane reports to a user."""


class ToolMissing(DevClusterError):
    """A program the dev cluster needs is not installed."""


class BuildFailed(DevClusterError):
    """Building a component from its Go module failed."""


class FleetError(DevClusterError):
    """The fleet file is malformed or names something unknown."""


class StartFailed(DevClusterError):
    """A component did not start or become healthy."""
