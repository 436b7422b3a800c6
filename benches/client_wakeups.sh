#!/usr/bin/env bash
# The interactive client's wake-ups, CPU and memory while it listens in a demo room.
#
#   cargo build --release && bash benches/client_wakeups.sh [BIN]
#
# Starts `BIN serve --demo` on 127.0.0.1:7799 (a separate process, so its bots do not
# count), runs the client in a tmux pane of its own (no microphone, playout to a WAV
# through the paced file device), joins the first room, waits 6 s, then samples the
# client's context switches (all threads) and CPU time over 10 s. Needs tmux.
set -euo pipefail
BIN=${1:-target/release/hallway}
BIN=$(realpath "$BIN")
D=$(mktemp -d)
mkdir -p "$D/c" "$D/s"
"$BIN" serve --demo --data :memory: --listen 127.0.0.1:7799 >/dev/null 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; tmux -L wakeups kill-server 2>/dev/null; rm -rf "$D"' EXIT
sleep 5
tmux -L wakeups -f /dev/null new-session -d -x 100 -y 30 \
  "XDG_CONFIG_HOME=$D/c XDG_STATE_HOME=$D/s HALLWAY_INPUT=null $BIN --server http://127.0.0.1:7799 --output $D/out.wav"
sleep 8
tmux -L wakeups send-keys Enter
sleep 6
PID=$(pgrep -f "^$BIN --server http://127.0.0.1:7799" | head -1)
switches() { cat /proc/"$PID"/task/*/status | awk '/voluntary_ctxt_switches/ {s += $2} END {print s}'; }
ticks() { awk '{print $14 + $15}' /proc/"$PID"/stat; }
per_thread() { for t in /proc/"$PID"/task/*; do echo "$(cat "$t/comm") $(awk '/voluntary_ctxt_switches/ {s += $2} END {print s}' "$t/status")"; done | sort; }
per_thread >"$D/before"
a=$(switches); c=$(ticks); sleep 10; b=$(switches); d=$(ticks)
per_thread >"$D/after"
# Per thread name (threads of one name summed), wake-ups a second.
join -a1 <(awk '{s[$1] += $2} END {for (n in s) print n, s[n]}' "$D/before" | sort) \
  <(awk '{s[$1] += $2} END {for (n in s) print n, s[n]}' "$D/after" | sort) |
  awk '{printf "  %-22s %5d /s\n", $1, ($3 - $2) / 10}'
# CPU ticks are 1/100 s: over 10 s, ticks / 10 is the percentage of one core.
echo "client: $(( (b - a) / 10 )) wake-ups/s (context switches, all threads), $(awk -v t=$(( d - c )) 'BEGIN {printf "%.1f", t / 10}') % of a core, RSS $(awk '/VmRSS/ {print $2}' /proc/"$PID"/status) kB"
