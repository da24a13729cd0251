#!/usr/bin/env bash
# Two versions of the monitor through the fleet benchmark, alternately on the same machine:
#   bench/compare_commits.sh BEFORE [AFTER] [ROUNDS]      (AFTER: the working tree; ROUNDS: 2)
# Each round runs BEFORE then AFTER with the 3,000-server cycle (bench.fleet_bench --sizes 3000
# --cycles 4, no baseline, no silent hosts), each version from its own checkout and on its own
# PYTHONPATH, with this checkout's .venv. Prints one row per run and the medians of each version.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
before="$1"; after="${2:-}"; rounds="${3:-2}"
out="$(mktemp -d /tmp/heartbeat-compare.XXXX)"
cleanup() {  # the worktrees made below (checkout runs in a subshell: found by their folder)
  for t in "$out"/tree-*; do [ -d "$t" ] && git -C "$here" worktree remove --force "$t" >/dev/null 2>&1; done; true
}
trap cleanup EXIT
checkout() {  # a worktree of commit $1, or this checkout when $1 is empty
  if [ -z "$1" ]; then echo "$here"; return; fi
  local tree="$out/tree-$(git -C "$here" rev-parse --short "$1")"
  git -C "$here" worktree add -q --detach "$tree" "$1" >&2; echo "$tree"
}
before_tree="$(checkout "$before")"; after_tree="$(checkout "$after")"
args=(--sizes 3000 --cycles 4 --baseline-n 0 --silent-n 0)
for round in $(seq 1 "$rounds"); do
  for kind in before after; do
    tree="${kind}_tree"; tree="${!tree}"
    echo "round $round: $kind ($tree)"
    (cd "$tree" && PYTHONPATH="$tree/plugins:$tree" "$here/.venv/bin/python" -m bench.fleet_bench "${args[@]}" \
        --json "$out/$kind-$round.json" > "$out/$kind-$round.log" 2>&1)
  done
done
"$here/.venv/bin/python" - "$out" "$rounds" <<'PY'
import json, statistics, sys
from pathlib import Path
out, rounds = Path(sys.argv[1]), int(sys.argv[2])
print("| run | 3,000 cycle s (median of 4) | raw engine s | x raw | monitor CPU ms/server | all-in ms/server | load 1 min |")
print("|---|---|---|---|---|---|---|")
by_kind: dict[str, list[dict]] = {"before": [], "after": []}
for r in range(1, rounds + 1):
    for kind in ("before", "after"):
        raw, cycle = json.loads((out / f"{kind}-{r}.json").read_text())["rows"][:2]
        by_kind[kind].append(cycle)
        print(f"| {kind} {r} | {cycle['wall_s']:.2f} | {raw['wall_s']:.2f} | {cycle['vs_raw']:.2f} | "
              f"{cycle['cpu_ms_per_server']:.2f} | {cycle['all_in_ms_per_server']:.2f} | {cycle['load1']:.1f} |")
med = {k: {f: statistics.median(c[f] for c in v) for f in ("wall_s", "vs_raw", "cpu_ms_per_server")}
       for k, v in by_kind.items()}
print(f"\nafter / before: cycle {med['after']['wall_s'] / med['before']['wall_s']:.2f}, "
      f"x raw {med['after']['vs_raw']:.2f} vs {med['before']['vs_raw']:.2f}, "
      f"monitor CPU per server {med['after']['cpu_ms_per_server'] / med['before']['cpu_ms_per_server']:.2f}")
print(f"logs and figures: {out}")
PY
