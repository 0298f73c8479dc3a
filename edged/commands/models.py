"""`edged models` (placeholder until its issue lands)."""

import argparse

from edged.errors import EdgedError


def configure(parser: argparse.ArgumentParser) -> None:
    pass


def main(args: argparse.Namespace) -> int:
    raise EdgedError("`edged models` is not built yet")
