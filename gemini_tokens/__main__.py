"""``python -m gemini_tokens``: the same as the ``gemini-tokens`` command."""

import sys

from gemini_tokens._cli import main

if __name__ == "__main__":  # not when the docs build imports the package to document it
    sys.exit(main())
