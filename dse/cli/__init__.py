"""The `dse` command-line interface."""
