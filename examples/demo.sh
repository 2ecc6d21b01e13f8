#!/usr/bin/env bash
# The main job: index the example corpus and search it. Offline: BM25 over the pages' text.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf demo-index
dse index examples/corpus --index demo-index --encoder bm25
echo
dse info --index demo-index
for q in "how do I wire the inverter" "revenue growth by segment" "which bird dives fastest" "oven temperature for bread"; do
  echo
  echo "\$ dse search --index demo-index \"$q\" -k 3"
  dse search --index demo-index "$q" -k 3
done

echo
echo "Next: search it from a browser, an HTTP API or an agent:"
echo "  source .venv/bin/activate && dse serve --index demo-index    # then open http://127.0.0.1:8000"
