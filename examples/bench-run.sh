#!/usr/bin/env bash
# `pier run` against the bundled fake Heroku, side by side with the Heroku CLI's
# `heroku run --exit-code` against the same fake: wall time and peak memory of one run
# each (and of `--runs N`, the median), with the same one-off dyno script.
#
#   examples/bench-run.sh [--runs N] [--release]
#
# The Heroku CLI is taken from `$HEROKU_CLI`, else `heroku` on PATH; without it only
# `pier run` is measured (install it with `npm install -g heroku`).
set -euo pipefail

runs=1
profile=debug
while [ $# -gt 0 ]; do
    case $1 in
        --runs) runs=$2; shift 2 ;;
        --release) profile=release; shift ;;
        *) echo "usage: $0 [--runs N] [--release]" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
flag=; [ "$profile" = release ] && flag=--release
(cd "$root" && cargo build -q $flag -p pier && cargo build -q $flag -p fake-heroku)
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target="$root/$target" ;; esac
pier="$target/$profile/pier"
fake="$target/$profile/fake-heroku"
heroku=${HEROKU_CLI:-$(command -v heroku || true)}

work=$(mktemp -d "${TMPDIR:-/tmp}/pier-bench-run.XXXXXX")
fake_pid=
cleanup() {
    if [ -n "$fake_pid" ]; then kill "$fake_pid" 2>/dev/null || true; wait "$fake_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# A test CA and a certificate for 127.0.0.1, for the fake's TLS rendezvous.
(
    cd "$work"
    ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.crt -days 2 -subj "/CN=Pier bench CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    openssl req "${ec[@]}" -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n' > server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 \
        -extfile server.ext 2>/dev/null
)

key=bench-heroku-api-key-51c0e2
cat > "$work/seed.json" <<JSON
{ "accounts": [ { "email": "bench@example.com", "api_key": "$key", "apps": ["hello-app"],
                  "releases": [ { "app": "hello-app" } ] } ] }
JSON
mkfifo "$work/fake.out"
"$fake" --port 0 --seed "$work/seed.json" --tls-cert "$work/server.crt" --tls-key "$work/server.key" \
    > "$work/fake.out" 2> "$work/fake.log" &
fake_pid=$!
read -r line < "$work/fake.out"
url=${line##* }

export HEROKU_HOST="$url" HEROKU_API_KEY="$key" SSL_CERT_FILE="$work/ca.crt"
export XDG_CONFIG_HOME="$work/config" PIER_CACHE_DIR="$work/cache" NO_COLOR=1
mkdir "$work/project"
cd "$work/project"
"$pier" init > /dev/null 2>&1
"$pier" server add --method heroku --name Prod --strategy manual --set app=hello-app --set register_ssh_key=false \
    --secret api_key=env:HEROKU_API_KEY > /dev/null 2>&1

# A pipe that this script holds open for writing, so it never ends while we run.
mkfifo "$work/input"
exec 7<> "$work/input"

script='{"runs": [{"command": "bin/report", "output": ["migrating", "done"], "status": 3}]}'
# Runs "$@" once with the fake scripted; prints "SECONDS KB EXIT".
measure() {
    "$fake" script --url "$url" "$script" > /dev/null
    set +e
    # Standard input stays open (a pipe nothing writes to): the Heroku CLI, given an input
    # that has ended, writes an EOT to a dyno that may have ended already and fails with
    # EPIPE (exit 1) when the dyno is as quick as the fake's.
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" > "$work/out" 2> "$work/err" < "$work/input"
    local code=$?
    set -e
    # GNU time adds a line before the figures when the command exits non-zero.
    echo "$(tail -1 "$work/time") $code"
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
report() {
    local name=$1; shift
    : > "$work/samples"
    for _ in $(seq "$runs"); do measure "$@" >> "$work/samples"; done
    local seconds kb code
    seconds=$(cut -d' ' -f1 "$work/samples" | median)
    kb=$(cut -d' ' -f2 "$work/samples" | median)
    code=$(tail -1 "$work/samples" | cut -d' ' -f3)
    printf '%-34s %8s s %8s MiB   exit %s\n' "$name" "$seconds" "$((kb / 1024))" "$code"
}

echo "one-off dyno printing 2 lines and exiting 3, against the fake at $url ($runs run(s), median)"
"$pier" run prod -- bin/report > /dev/null 2>&1 || true   # compiles the plugin into the cache
report "pier run ($profile)" "$pier" run prod -- bin/report
if [ -n "$heroku" ]; then
    export HEROKU_PARTICLEBOARD_URL="$url" DISABLE_TELEMETRY=true HEROKU_DISABLE_AUTOUPDATE=1
    export NODE_EXTRA_CA_CERTS="$work/ca.crt"
    "$heroku" --version > /dev/null 2>&1 || true   # first start writes its caches
    report "heroku run --exit-code ($("$heroku" --version 2>/dev/null | cut -d' ' -f1))" \
        "$heroku" run --exit-code --no-tty -a hello-app -- bin/report
else
    echo "heroku CLI: not installed (set HEROKU_CLI or put heroku on PATH to compare)"
fi
