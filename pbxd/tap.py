"""twistd plugin entry point (placeholder until the service is wired)."""

from twisted.python import usage


class Options(usage.Options):
    optParameters = [["config", "c", "etc/config.yml", "Path to the YAML configuration file."]]


def makeService(options):
    from twisted.application.service import MultiService

    return MultiService()
