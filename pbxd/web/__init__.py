"""The admin API and metrics over twisted.web (layer 6). See :mod:`pbxd.web.api`."""
