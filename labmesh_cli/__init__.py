"""The ``labmesh`` command line (``labmesh --help``); entry point :func:`labmesh_cli.main.main`."""
