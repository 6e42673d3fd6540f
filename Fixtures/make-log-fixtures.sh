#!/bin/sh
# Remakes the log tool's fixtures (docs/log-tool.md): data directories written through RaftStorage
# by `gallocy log make-fixture`. The "v1" in their names is the storage layout, entry and command
# format version they were made with; when a format changes, add new fixtures with the new version.
# Usage: Fixtures/make-log-fixtures.sh [path/to/gallocy]   (from the repository root)
set -eu
GALLOCY=${1:-.build/debug/gallocy}
cd "$(dirname "$0")"
[ -x "../$GALLOCY" ] && GALLOCY="../$GALLOCY"
rm -rf log-v1-small log-v1-snapshot log-v1-corrupt log-v1-diverged
"$GALLOCY" log make-fixture --out log-v1-small --seed 1 --entries 200
"$GALLOCY" log make-fixture --out log-v1-snapshot --seed 2 --entries 240 --snapshot-at 150
"$GALLOCY" log make-fixture --out log-v1-corrupt --seed 1 --entries 200 --corrupt-index 57
"$GALLOCY" log make-fixture --out log-v1-diverged --seed 1 --entries 200 --diverge-at 120
