"""The ``jobbridge`` command (and ``python -m jobbridge``): the command line, entered
so that a Ctrl-C while its modules still load (a fifth of a second, longer on a busy
login node) ends it as one later does: one line, exit 130, no traceback."""

import sys


def main() -> int:
    try:
        from .cli import main as command_line

        return command_line()
    except KeyboardInterrupt:
        print("jobbridge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
