"""An example pbxd plugin package (see docs/plugins.md).

Put the directory holding this package on ``PYTHONPATH`` (or install it) and
name it in the configuration::

    plugins: [pbxd_example]

Every module in the package is searched for dialplan applications.
"""
