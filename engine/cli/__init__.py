"""The `leadengine` command line: parsing, dispatch, output; each command module registers its own
subcommands and handlers (engine/cli/main.py gathers them)."""
