#!/usr/bin/env bash
# Wall time of the default test run (pytest -q, the pyproject's markers) in two source trees, A then B,
# with the load average beside each figure. Run it under the machine's measurement lock:
#
#   flock /work/cpu.lock benchmarks/test_suite_time.sh /tmp/main-tree . > out.txt
#
# A tree is a checkout (git archive / worktree) of the revision to time; each is imported from its own
# directory (PYTHONPATH), with the same interpreter ($PYTHON, default: python3). A run that passes
# LIMIT_S (default 300) is stopped and reported as such, so two runs fit a 10-minute lock.
set -u
PYTHON=${PYTHON:-python3}
LIMIT_S=${LIMIT_S:-300}
for tree in "$@"; do
  tree=$(cd "$tree" && pwd)
  rev=$(git -C "$tree" rev-parse --short HEAD 2>/dev/null || echo "archive")
  echo "== $tree ($rev)  load before: $(cut -d' ' -f1-3 /proc/loadavg)  $(date -u +%H:%M:%S)"
  start=$(date +%s.%N)
  (set -o pipefail; cd "$tree" && PYTHONPATH="$tree" timeout "$LIMIT_S" "$PYTHON" -m pytest -q 2>&1 | tail -n 3)
  rc=$?
  end=$(date +%s.%N)
  printf '   wall %.1f s  (exit %s%s)  load after: %s\n' "$(echo "$end - $start" | bc)" "$rc" \
    "$([ "$rc" = 124 ] && echo ', stopped at the limit')" "$(cut -d' ' -f1-3 /proc/loadavg)"
done
