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

type_into() {  # pane $1 gets lines $2.. typed, once its shell shows a prompt (else they echo twice)
    local pane=$1
    shift
    for _ in $(seq 50); do
        [ "$(tmux display -p -t "$pane" '#{cursor_x}')" -gt 0 ] && break
        sleep 0.1
    done
    for line in "$@"; do
        tmux send-keys -t "$pane" "$line" Enter
    done
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
    if ovs-vsctl --timeout=5 br-exists nat 2>/dev/null; then
        if pgrep -x mn > /dev/null || pgrep -f mininet/demo.py > /dev/null; then
            echo "lab: Mininet runs already (make demo, or mn): exit it first" >&2
            exit 1
        fi
        # A crashed earlier lab left its switches and links: remove those, nothing else (not mn -c).
        .venv/bin/python -c 'from topologies.two_networks import sweep; sweep()'
    fi
    tmux new-session -d -s "$SESSION" -n lab -x 200 -y 50 -c "$PWD"
    tmux set-option -t "$SESSION" mouse on > /dev/null
    tmux split-window -t "$SESSION:lab" -v -c "$PWD"
    mapfile -t terminal_a < <(setup_lines 'A\$')
    mapfile -t terminal_b < <(setup_lines 'B\$')
    type_into "$SESSION:lab.0" "${terminal_a[@]}"
    for _ in $(seq 300); do  # the switch connects at once to a controller that listens
        listening 6653 && break
        sleep 0.1
    done
    type_into "$SESSION:lab.1" "${terminal_b[@]}"
fi
if [ -t 0 ] && [ -t 1 ]; then
    exec tmux attach -t "$SESSION"
fi
echo "lab: running in tmux session $SESSION; see it with: tmux attach -t $SESSION"
