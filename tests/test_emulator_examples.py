"""Runs ``examples/testing_offline.py``, the module the "Testing your app offline" page shows.

Its tests are imported here so that pytest collects them with the plugin's fixtures, exactly
as in a user's suite; ``test_docs.py`` checks that the page shows that file verbatim.
"""

from __future__ import annotations

import pathlib

from examples.testing_offline import (  # noqa: F401  (collected by pytest)
    fast_retries,
    test_a_browser_can_use_it_once,
    test_a_flaky_service,
    test_sync_code,
    test_sync_code_inside_an_async_test,
    test_the_token_expires,
    test_the_token_is_locked_to_audio,
    test_with_the_official_sdk,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_the_testing_page_shows_the_example() -> None:
    page = (ROOT / "docs" / "testing.md").read_text()
    example = (ROOT / "examples" / "testing_offline.py").read_text()
    assert f"```python\n{example}```" in page
