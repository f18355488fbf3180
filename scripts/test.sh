#!/usr/bin/env bash
# The project's test command, for people and CI alike (.ci/run execs it).
#
#   scripts/test.sh              everything: tools, lint, unit, integration
#   scripts/test.sh lint|unit|integration   one stage (after the setup)
#
# Setup: installs the media checkers when one is missing (Debian, as root),
# builds the pinned servers once (cached, see internal/devtools), and
# downloads and compiles everything so that the integration stage needs no
# network.
#
# Integration tests are named TestIntegration*, skip themselves unless
# MATRIX_RECORDER_INTEGRATION=1, and run here inside a private network
# namespace (unshare -n, only lo, which is brought up): the servers they start
# (Dendrite, versitygw, livekit-server, Redis, LiveKit Egress, headless Chromium) are
# unreachable from outside and no DNS query leaves the machine.
#
# Go build tag: goolm (mautrix's pure-Go Olm); every go command passes it.
# Keep ~/.cache/go-build, ~/go/pkg/mod and the tool cache
# ($MATRIX_RECORDER_TOOLS or ~/.cache/matrix-recorder/tools) between CI runs:
# a cold run builds for 15-20 minutes before the first test.
set -euo pipefail
cd "$(dirname "$0")/.."

TAGS=goolm
STAGE=${1:-all}
case "$STAGE" in
all | lint | unit | integration) ;;
*)
	echo "usage: $0 [all|lint|unit|integration]" >&2
	exit 2
	;;
esac

step() { printf '\n==> %s\n' "$*" >&2; }

# --- Licences first: the project is Apache-2.0 and builds no AGPL code in any role, not
# even a server only the tests or the demo run. Fail before anything is installed or
# built if a dev tool's pin names one (the list: internal/devtools/licence.go).
step "checking that no dev tool pin names an AGPL module"
go run -tags "$TAGS" ./internal/devtools/cmd/ensure-tools -licences
as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		echo "need root to run: $*" >&2
		return 1
	fi
}

# --- Debian packages: the media checkers, ip for the namespace, a C compiler
# for cgo (Dendrite, go-sqlite3), and libolm's headers: the bot is built with
# -tags goolm (pure-Go Olm), but a plain `go build`/`go vet ./...` compiles
# mautrix's libolm binding, so the lint stage checks that build too.
missing=()
for tool in ffprobe ffmpeg mkvinfo opusinfo oggz-validate ip gcc; do
	command -v "$tool" >/dev/null || missing+=("$tool")
done
[ -e /usr/include/olm/olm.h ] || missing+=(libolm-dev)
# PostgreSQL (database.type postgres): internal/devpg starts a cluster of its own from
# Debian's binaries for the storage and lifecycle tests (nothing is started here).
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
	step "installing Debian packages (missing: ${missing[*]})"
	pkgs=(ffmpeg mkvtoolnix opus-tools oggz-tools iproute2 libolm-dev postgresql)
	command -v gcc >/dev/null || pkgs+=(gcc libc6-dev)
	as_root apt-get -o DPkg::Lock::Timeout=900 update
	as_root env DEBIAN_FRONTEND=noninteractive \
		apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends "${pkgs[@]}"
fi

# --- LiveKit Egress (built below) needs GStreamer's headers and the plugins track
# egress writes with (Ogg, WebM, MP4; Opus, VP8/VP9, H.264), and Redis between it and
# livekit-server.
egress_pkgs=(pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-plugins-base
	gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav redis-server)
missing_pkgs=()
for pkg in "${egress_pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing_pkgs+=("$pkg")
done
if [ ${#missing_pkgs[@]} -gt 0 ]; then
	step "installing Debian packages for LiveKit Egress (missing: ${missing_pkgs[*]})"
	as_root apt-get -o DPkg::Lock::Timeout=900 update
	as_root env DEBIAN_FRONTEND=noninteractive \
		apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends "${missing_pkgs[@]}"
fi

# --- The browser tests (test/browser, TestIntegrationBrowser*): Debian's Chromium, and
# the npm packages pinned by test/browser/package-lock.json (matrix-js-sdk, livekit-client,
# playwright-core, esbuild), installed once per lock file into the cache and linked as
# test/browser/node_modules; the pages are bundled here because the namespace stage has no
# network. playwright-core only drives /usr/bin/chromium: no tool downloads a browser.
if ! command -v chromium >/dev/null || ! command -v npm >/dev/null; then
	step "installing Debian packages for the browser tests (chromium, node)"
	browser_pkgs=(chromium)
	command -v npm >/dev/null || browser_pkgs+=(nodejs npm)
	as_root apt-get -o DPkg::Lock::Timeout=900 update
	as_root env DEBIAN_FRONTEND=noninteractive \
		apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends "${browser_pkgs[@]}"
fi
npm_cache="${MATRIX_RECORDER_NPM:-${XDG_CACHE_HOME:-$HOME/.cache}/matrix-recorder/npm}"
npm_dir="$npm_cache/$(sha256sum test/browser/package-lock.json | cut -c1-16)"
if [ ! -d "$npm_dir/node_modules" ]; then
	step "installing the browser tests' npm packages into $npm_dir"
	mkdir -p "$npm_cache"
	npm_tmp=$(mktemp -d "$npm_dir.tmp.XXXXXX")
	cp test/browser/package.json test/browser/package-lock.json "$npm_tmp/"
	# --ignore-scripts: nothing needs an install script (esbuild's binary comes as its
	# own package).
	(cd "$npm_tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
	mv -T "$npm_tmp" "$npm_dir"
fi
if [ -e test/browser/node_modules ] && [ ! -L test/browser/node_modules ]; then
	rm -rf test/browser/node_modules # a hand-made install; the cached one replaces it
fi
ln -sfn "$npm_dir/node_modules" test/browser/node_modules
step "bundling the browser test pages"
node test/browser/build.mjs

# --- Go modules and the pinned servers (built once per version, cached).
step "downloading Go modules"
go mod download
step "building or finding the pinned servers (the first time takes 15-20 minutes)"
go run -tags "$TAGS" ./internal/devtools/cmd/ensure-tools dendrite versitygw livekit-server egress

if [ "$STAGE" = all ] || [ "$STAGE" = lint ]; then
	step "gofmt"
	unformatted=$(gofmt -l .)
	if [ -n "$unformatted" ]; then
		echo "gofmt needed on:" >&2
		echo "$unformatted" >&2
		exit 1
	fi
	step "go vet"
	go vet -tags "$TAGS" ./...
	step "go vet without build tags (mautrix's libolm binding instead of goolm)"
	go vet ./...
fi

if [ "$STAGE" = all ] || [ "$STAGE" = unit ]; then
	step "unit tests (race detector; integration tests skip themselves)"
	# MATRIX_RECORDER_CI=1: a missing checker fails a test instead of
	# skipping it; this script has installed them all.
	MATRIX_RECORDER_CI=1 go test -tags "$TAGS" -race -count=1 ./...
	step "the lifecycle's and the uploader's unit tests again, on PostgreSQL (database.type postgres)"
	MATRIX_RECORDER_CI=1 MATRIX_RECORDER_TEST_DATABASE=postgres go test -tags "$TAGS" -race -count=1 ./lifecycle/ ./lifecycle/upload/
	step "fuzz smoke test (every fuzz target for a few seconds, about 2 minutes)"
	TAGS="$TAGS" scripts/fuzz-smoke.sh
fi

# --- The container image: built and started when a container engine answers here
# (`docker info`), else skipped with a message. It checks that the first run writes a
# config into the volume and exits 2, that a volume the image's user cannot write gets a
# clear message, and that the healthcheck command in the image says "not ready" (exit 1)
# for a bot that cannot be reached, rather than crashing.
container_test() {
	if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
		step "container image: skipped (no container engine here: docker info fails)"
		return 0
	fi
	step "container image: build, first run, healthcheck"
	local tag vol code out
	tag="matrix-recorder-test:$$"
	vol=$(mktemp -d)
	docker build -q -t "$tag" . >/dev/null
	chmod 0777 "$vol" # the image runs as uid 1000
	code=0
	out=$(docker run --rm -v "$vol:/data" "$tag" 2>&1) || code=$?
	if [ "$code" -ne 2 ] || [ ! -s "$vol/config.yaml" ] || ! grep -q "fill in" <<<"$out"; then
		echo "first run: exit $code, config written: $([ -s "$vol/config.yaml" ] && echo yes || echo no)" >&2
		echo "$out" >&2
		return 1
	fi
	code=0
	out=$(docker run --rm -v "$vol:/data" \
		-e MATRIX_RECORDER_MATRIX_HOMESERVER=http://127.0.0.1:9 -e MATRIX_RECORDER_MATRIX_USER_ID=@recorder:test.invalid \
		-e MATRIX_RECORDER_MATRIX_PASSWORD=unused "$tag" healthcheck -c /data/config.yaml 2>&1) || code=$?
	if [ "$code" -ne 1 ] || ! grep -q "not ready" <<<"$out"; then
		echo "healthcheck without a bot: exit $code, want 1 and \"not ready\": $out" >&2
		return 1
	fi
	local ro
	ro=$(mktemp -d)
	chmod 0555 "$ro"
	code=0
	out=$(docker run --rm --user 4242:4242 -v "$ro:/data" "$tag" 2>&1) || code=$?
	if [ "$code" -ne 2 ] || ! grep -q "is not writable" <<<"$out"; then
		echo "unwritable volume: exit $code, want 2 and a message: $out" >&2
		return 1
	fi
	docker image rm -f "$tag" >/dev/null
	rm -rf "$vol" "$ro"
}

if [ "$STAGE" = all ] || [ "$STAGE" = unit ]; then
	container_test
fi

if [ "$STAGE" = all ] || [ "$STAGE" = integration ]; then
	step "compiling tests for the network namespace (it has no network for the module proxy)"
	go test -tags "$TAGS" -count=1 -run '^$' ./... >/dev/null
	step "integration tests in a private network namespace"
	# Root gets a plain network namespace; anyone else a user namespace too.
	unshare_flags=(-n)
	[ "$(id -u)" -eq 0 ] || unshare_flags=(-r -n)
	unshare "${unshare_flags[@]}" env TAGS="$TAGS" bash -c '
		set -euo pipefail
		ip link set lo up
		export MATRIX_RECORDER_INTEGRATION=1 MATRIX_RECORDER_CI=1
		# Fail at once, clearly, if anything still wants the module proxy.
		export GOPROXY=off GOFLAGS="$(go env GOFLAGS) -mod=readonly"
		go test -tags "$TAGS" -count=1 -timeout 30m -run "^TestIntegration" ./...
	'
fi

step "ok ($STAGE)"
