python3.11 -m venv .venv && .venv/bin/pip install -q . && .venv/bin/gemini-tokens demo
python3.11 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/pytest
