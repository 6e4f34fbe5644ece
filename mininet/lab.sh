#!/bin/bash
# `make lab`: the two terminals of mininet/LAB.md in one tmux window, as its "Setup" section says:
# terminal A (the upper pane) runs the controller, terminal B (the lower pane) Mininet. The panes
# get exactly the `A$` and `B$` lines of that section, so the lab and `make lab` cannot drift apart.
# With a terminal it attaches; without one (scripts, tests) it leaves the session running detached.
# Run as root from anywhere; it works in the repository's top directory.
set -euo pipefail
cd "$(dirname "$0")/.."
SESSION=nat-lab

setup_lines() {  # the lines of LAB.md's Setup section with prompt $1, prompt removed
    sed -n '/^## Setup/,/^## /p' mininet/LAB.md | sed -n "s/^$1 //p"
}

listening() {
    ss -Hltn "( sport = :$1 )" | grep -q .
}

if tmux has-session -t "$SESSION" 2>/dev/null; then
    echo "lab: already running"
else
    for port in 6653 8080; do
        if listening "$port"; then
            echo "lab: port $port is in use (another controller?); stop it first" >&2
            exit 1
        fi
    done
    # A crashed earlier lab may have left its switches and links; remove those, nothing else (not mn -c).
    .venv/bin/python -c 'from topologies.two_networks import sweep; sweep()' 2>/dev/null || true
    tmux new-session -d -s "$SESSION" -n lab -x 200 -y 50 -c "$PWD"
    tmux set-option -t "$SESSION" mouse on > /dev/null
    tmux split-window -t "$SESSION:lab" -v -c "$PWD"
    while IFS= read -r line; do
        tmux send-keys -t "$SESSION:lab.0" "$line" Enter
    done < <(setup_lines 'A\$')
    for _ in $(seq 300); do
        listening 6653 && break
        sleep 0.1
    done
    while IFS= read -r line; do
        tmux send-keys -t "$SESSION:lab.1" "$line" Enter
    done < <(setup_lines 'B\$')
fi
if [ -t 0 ] && [ -t 1 ]; then
    exec tmux attach -t "$SESSION"
fi
echo "lab: running in tmux session $SESSION; see it with: tmux attach -t $SESSION"
