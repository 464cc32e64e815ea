"""One module per CLI command: argparse and ``main(argv) -> int``; the only layer that turns
errors into messages and exit codes. May import every layer below it."""
