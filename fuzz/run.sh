#!/usr/bin/env bash
# Runs every cargo-fuzz target listed in fuzz/Cargo.toml for N seconds each.
#
#   fuzz/run.sh [N]      N defaults to 30
#
# Works on a stable toolchain (RUSTC_BOOTSTRAP unlocks the sanitizer flags cargo-fuzz needs).
# Each target keeps its growing corpus in fuzz/corpus/<target> (not committed) and also reads
# the committed seeds in fuzz/seeds/<target> when there are any. Crashes land in
# fuzz/artifacts/<target>; the script goes on with the other targets and fails at the end.
set -uo pipefail

secs="${1:-30}"
case "$secs" in
'' | *[!0-9]*)
    echo "usage: $0 [seconds per target]" >&2
    exit 2
    ;;
esac

cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
# Builds stay in fuzz/target: sanitizer builds must not mix with the crate's normal ones.
unset CARGO_TARGET_DIR

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
    exit 2
fi

mapfile -t targets < <(cargo fuzz list)
if [ "${#targets[@]}" -eq 0 ]; then
    echo "no fuzz targets in fuzz/Cargo.toml" >&2
    exit 2
fi

failed=()
for target in "${targets[@]}"; do
    corpus=("fuzz/corpus/$target")
    mkdir -p "${corpus[0]}"
    if [ -d "fuzz/seeds/$target" ]; then
        corpus+=("fuzz/seeds/$target")
    fi
    echo "== $target: ${secs}s"
    if ! cargo fuzz run "$target" "${corpus[@]}" -- -max_total_time="$secs"; then
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz targets that failed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "all ${#targets[@]} fuzz targets ran ${secs}s without a crash"
