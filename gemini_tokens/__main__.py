"""``python -m gemini_tokens``: the same as the ``gemini-tokens`` command."""

import sys

from gemini_tokens._cli import main

sys.exit(main())
