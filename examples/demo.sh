#!/usr/bin/env bash
# Pier's main job, end to end, against the bundled fake Heroku (no account needed):
# init, add a Heroku server non-interactively, deploy examples/hello-app with a migration
# command, show the timeline; then a deploy whose release phase fails, reported as failed.
# It prints what it does as it goes and leaves nothing running.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then bold=$'\e[1m'; plain=$'\e[0m'; else bold=; plain=; fi
say() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
show() { printf '%s$ %s%s\n' "$bold" "$*" "$plain"; "$@"; }

say "Building pier, then the fake Heroku (the first build takes a few minutes; cargo shows its progress)"
# Two builds, not one: built together, the two packages share dependencies with the union
# of their features (the fake's axum turns on more of serde, hyper and tower), which makes
# a pier unlike the one `cargo build -p pier` or `cargo run -p pier` makes, and the README's
# next command would compile pier and most of its dependencies again.
(cd "$root" && cargo build -p pier && cargo build -p fake-heroku)
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target="$root/$target" ;; esac
pier="$target/debug/pier"
fake="$target/debug/fake-heroku"

work=$(mktemp -d "${TMPDIR:-/tmp}/pier-demo.XXXXXX")
fake_pid=
cleanup() {
    if [ -n "$fake_pid" ]; then kill "$fake_pid" 2>/dev/null || true; wait "$fake_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

say "Starting the fake Heroku on 127.0.0.1 with one account and the app hello-app"
cat > "$work/seed.json" <<'JSON'
{ "accounts": [ { "email": "demo@example.com", "api_key": "demo-heroku-api-key-7f3a91", "apps": ["hello-app"] } ] }
JSON
mkfifo "$work/fake.out"
"$fake" --port 0 --seed "$work/seed.json" > "$work/fake.out" 2> "$work/fake.log" &
fake_pid=$!
read -r line < "$work/fake.out"
url=${line##* }
echo "$line"

# Pier reads the API host and key the way the Heroku CLI does. Everything the demo
# writes (master key, project, cache) stays in a temporary directory.
export HEROKU_HOST="$url" HEROKU_API_KEY="demo-heroku-api-key-7f3a91"
export XDG_CONFIG_HOME="$work/config" PIER_CACHE_DIR="$work/cache"

say "A checkout of examples/hello-app, committed with git"
cp -R "$root/examples/hello-app" "$work/hello-app"
cd "$work/hello-app"
git init -q -b main
git -c user.name=Demo -c user.email=demo@example.com add -A
git -c user.name=Demo -c user.email=demo@example.com commit -q -m "Hello, Pier"
git log --oneline

say "Set up: pier init, then a Heroku server, non-interactively as CI would"
show "$pier" init
show "$pier" server add --method heroku --name "Production" --strategy automatic --branch main \
    --set app=hello-app --secret api_key=env:HEROKU_API_KEY
show "$pier" server edit production --add-command "sh bin/migrate"
show cat pier.toml
say "Commit the server settings: a deploy ships a commit, never uncommitted files"
git -c user.name=Demo -c user.email=demo@example.com add pier.toml pier.secrets
git -c user.name=Demo -c user.email=demo@example.com commit -q -m "Deploy with Pier"

say "Deploy: Build API upload, build, release phase, then the deploy commands"
show "$pier" deploy production

say "A deploy whose release phase (the migration) fails on Heroku"
"$fake" script --url "$url" '{"next_build": {"status": "succeeded", "release": {"status": "failed", "release_phase": true, "output": ["Running release command...", "Migrating database...", "ERROR: relation \"greetings\" already exists", "Release command failed with exit status 1"]}}}'
set +e
show "$pier" deploy production
status=$?
set -e
if [ "$status" -ne 1 ]; then
    echo "expected the failed release phase to fail the deploy with exit 1, got $status" >&2
    exit 1
fi
echo "the failed release phase was reported as a failed deploy (exit $status), never as a pass"

say "The deployment timeline"
show "$pier" timeline
say "Done: the fake Heroku is stopped and the temporary files are removed"
