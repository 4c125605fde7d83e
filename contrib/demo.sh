#!/usr/bin/env bash
# Runs syncd in the foreground on a demo tree, replicating
# /tmp/syncd-demo/src to /tmp/syncd-demo/dst with a 2-second window.
# Installs rsync first when it is missing (Debian, as root). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v rsync >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsync >/dev/null
    else
        echo "demo: install rsync first" >&2
        exit 1
    fi
fi
cargo build --release --quiet

demo=/tmp/syncd-demo
mkdir -p "$demo/src/docs" "$demo/dst"
[ -e "$demo/src/docs/hello.txt" ] || echo "hello from syncd" > "$demo/src/docs/hello.txt"
cat <<TXT
syncd is replicating $demo/src to $demo/dst (window: 2 s).
In another terminal, change files under $demo/src, then compare:
    diff -r $demo/src $demo/dst && echo mirror
    ./target/release/syncd queue inspect --state-dir $demo/state
    ./target/release/syncd status --state-dir $demo/state
TXT
exec ./target/release/syncd run --delay 2 --state-dir "$demo/state" "$demo/src/./" "$demo/dst"
