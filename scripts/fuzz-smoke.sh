#!/usr/bin/env bash
# A short run of every fuzz target in the repository, for CI: each target's seed corpus
# (testdata/fuzz, where every input that ever failed is kept) and then a few seconds of
# coverage-guided fuzzing. It catches a regression the seeds already know and, often, a
# shallow new bug; long fuzzing is done by hand:
#
#   go test -tags goolm -run '^$' -fuzz '^FuzzPipeline$' -fuzztime 10m ./recorder/
#
#   scripts/fuzz-smoke.sh              about FUZZ_SMOKE_SECONDS (60) of fuzzing in all
#   FUZZ_SMOKE_SECONDS=600 scripts/fuzz-smoke.sh
#
# The time is shared out evenly (at least 2 s a target); with the start of each run the
# whole takes about twice that on two cores. Targets are found with `go test -list`, so a
# new one is fuzzed without touching this script. Interesting inputs go to a fresh cache
# directory, so a run takes as long as the last one did (the Go build cache would keep
# them for ever and replay them all on every start). A failure leaves the input in the
# package's testdata/fuzz/<target>/ and the script ends non-zero after trying every
# target: commit the input with the fix, so that it stays a seed.
set -euo pipefail
cd "$(dirname "$0")/.."

TAGS=${TAGS:-goolm}
TOTAL=${FUZZ_SMOKE_SECONDS:-60}

# `go test -list` prints a package's matching names, then its "ok <package>" line. Only
# the packages whose tests declare a fuzz target are listed (listing builds their tests).
mapfile -t pkgs < <(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u)
targets=()
names=()
while read -r first second _; do
	case "$first" in
	Fuzz*) names+=("$first") ;;
	ok)
		for n in "${names[@]}"; do targets+=("$second $n"); done
		names=()
		;;
	*) names=() ;;
	esac
done < <(go test -tags "$TAGS" -list '^Fuzz' "${pkgs[@]}")

if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz-smoke: no fuzz targets found" >&2
	exit 1
fi
per=$((TOTAL / ${#targets[@]}))
[ "$per" -ge 2 ] || per=2

cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
failed=()
start=$SECONDS
for t in "${targets[@]}"; do
	pkg=${t% *}
	name=${t#* }
	printf '==> %s %s (%ds)\n' "$pkg" "$name" "$per" >&2
	# -fuzzminimizetime: Go minimizes every new interesting input for up to 60 s by
	# default; with inputs of tens of KB (FuzzPipeline's seeds are real streams) that
	# alone takes the whole budget and no fuzzing happens.
	# On a loaded machine Go's fuzzing coordinator can miss its own deadline while a
	# worker is slow to stop ("context deadline exceeded", no failing input written): that
	# is the toolchain, not a bug found, so the target runs once more. A second failure of
	# any kind fails the run.
	for attempt in 1 2; do
		if go test -tags "$TAGS" -run '^$' -fuzz "^${name}\$" -fuzztime "${per}s" \
			-fuzzminimizetime 5s "$pkg" -args -test.fuzzcachedir="$cache/$pkg/$name" >"$cache/out" 2>&1; then
			break
		fi
		if [ "$attempt" -eq 1 ] && grep -q 'context deadline exceeded' "$cache/out" && ! grep -q 'Failing input written' "$cache/out"; then
			echo "fuzz-smoke: $name: the fuzzing coordinator timed out (machine busy); once more" >&2
			continue
		fi
		cat "$cache/out" >&2
		failed+=("$pkg $name")
		break
	done
done
printf 'fuzz-smoke: %d targets, %d s each, %d s in all\n' "${#targets[@]}" "$per" $((SECONDS - start)) >&2
if [ ${#failed[@]} -gt 0 ]; then
	printf 'fuzz-smoke: FAILED: %s\n' "${failed[@]}" >&2
	exit 1
fi
