"""`edged watch` (placeholder until its issue lands)."""

import argparse

from edged.errors import EdgedError


def configure(parser: argparse.ArgumentParser) -> None:
    pass


def main(args: argparse.Namespace) -> int:
    raise EdgedError("`edged watch` is not built yet")
