#!/usr/bin/env bash
# The README's run command: set up (if needed) and start the app on http://localhost:8501.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/streamlit ] || bash scripts/setup.sh
exec .venv/bin/streamlit run app.py "$@"
