"""The `leadengine` command line: parsing, dispatch, output; each command module registers its own
subcommands and handlers (engine/cli/main/main.py gathers them)."""
