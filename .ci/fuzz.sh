#!/usr/bin/env bash
# Builds and runs every fuzz target in fuzz/ for a fixed time budget each;
# fails on any crash, panic, leak or per-input timeout and prints the
# reproducer's path and the command that replays it.
#
# Stable Rust only: cargo-fuzz needs nightly compiler flags (-Zsanitizer,
# sanitizer coverage), which RUSTC_BOOTSTRAP=1 unlocks on the stable toolchain.
# AddressSanitizer is on (the stable toolchain ships its runtime); set
# FUZZ_SANITIZER=none for a faster, uninstrumented build.
#
# Env: FUZZ_SECONDS (per target, default 60), FUZZ_TARGETS (default: all),
#      FUZZ_SANITIZER (address|none, default address),
#      FUZZ_TARGET_DIR (default ${CARGO_TARGET_DIR:-target}/fuzz),
#      FUZZ_PHASE (build: install cargo-fuzz and build the targets only;
#                  run: run them only, building what is missing; default both;
#                  .ci/run builds in the background while other steps run),
#      FUZZ_OPT_LEVEL (the release profile's opt-level for the build, default 3;
#                  .ci/run uses 1: a faster build, and these targets run as fast),
#      FUZZ_LIGHT=1 (build without the bridge crate, --no-default-features:
#                  the targets that need none of it, parse, envelope and callback;
#                  .ci/run does so, tests/hostile_connection.rs covers the handler).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

CARGO_FUZZ_VERSION=0.13.1
seconds=${FUZZ_SECONDS:-60}
sanitizer=${FUZZ_SANITIZER:-address}
phase=${FUZZ_PHASE:-all}
case "$phase" in build|run|all) ;; *) echo "FAIL: FUZZ_PHASE is build, run or all, not '$phase'" >&2; exit 2 ;; esac
target_dir=${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$root/target}/fuzz}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  cargo install --locked --version "$CARGO_FUZZ_VERSION" cargo-fuzz
fi
cargo fuzz --version
# The fuzz workspace's release profile, overridden for a faster build (cargo
# reads it; set after installing cargo-fuzz, which keeps its own profile).
export CARGO_PROFILE_RELEASE_OPT_LEVEL=${FUZZ_OPT_LEVEL:-3}

features=()
targets_all=$(cargo fuzz list)
if [ -n "${FUZZ_LIGHT:-}" ]; then
  features=(--no-default-features)
  # The targets that build without it: those fuzz/Cargo.toml gives no required-features.
  targets_all=$(cargo metadata --no-deps --format-version 1 --manifest-path fuzz/Cargo.toml \
    | python3 -c 'import json, sys
for t in json.load(sys.stdin)["packages"][0]["targets"]:
    if "bin" in t["kind"] and not t.get("required-features"):
        print(t["name"])')
fi
targets=${FUZZ_TARGETS:-$targets_all}
[ -n "$targets" ] || { echo "FAIL: no fuzz targets found" >&2; exit 1; }

start=$(date +%s)
if [ "$phase" != run ]; then
  # --codegen-units 16: several times faster to build on two cores, a little slower to run.
  cargo fuzz build "${features[@]}" --sanitizer "$sanitizer" --codegen-units 16 --target-dir "$target_dir" \
    || { echo "FAIL: fuzz targets do not build" >&2; exit 1; }
  echo "fuzz build: $(( $(date +%s) - start )) s"
  [ "$phase" = build ] && exit 0
fi

failed=()
for t in $targets; do
  echo "==> fuzz $t for ${seconds}s"
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log=$(mktemp)
  set +e
  cargo fuzz run "${features[@]}" --sanitizer "$sanitizer" --codegen-units 16 --target-dir "$target_dir" "$t" \
    -- -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  grep -E '^(#[0-9]+\s+DONE|Done [0-9]+ runs|stat::number_of_executed_units)' "$log" || true
  if [ "$rc" -ne 0 ]; then
    tail -60 "$log" >&2
    echo "FAIL: fuzz target $t (exit $rc)" >&2
    for a in fuzz/artifacts/"$t"/*; do
      [ -e "$a" ] || continue
      echo "reproducer: $root/$a" >&2
      echo "  replay: RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer $sanitizer $t $root/$a" >&2
      echo "  as text: RUSTC_BOOTSTRAP=1 cargo fuzz fmt $t $root/$a" >&2
    done
    failed+=("$t")
  fi
  rm -f "$log"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAIL: fuzz targets crashed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: $(echo $targets | wc -w) targets, ${seconds}s each, no crash ($(( $(date +%s) - start )) s in all)"
