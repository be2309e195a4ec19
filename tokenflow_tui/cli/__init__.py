"""The `tokenflow` command line: argparse, one module per command, the headless front end."""
