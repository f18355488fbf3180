#!/bin/sh
# The container image's entrypoint. It checks that the config's folder (the /data volume)
# is writable, writes a config there on the first run and says what to fill in (exit 2),
# then runs the recorder with it. Arguments: a command (healthcheck, -version, ...) runs
# matrix-recorder with them as they are; flags are added to the run.
set -eu
config=${MATRIX_RECORDER_CONFIG:-/data/config.yaml}
dir=$(dirname "$config")

case "${1:-}" in
healthcheck | -version | -h | -help | --help | -generate-config) exec matrix-recorder "$@" ;;
esac

probe="$dir/.matrix-recorder-write-test.$$"
if ! (: >"$probe") 2>/dev/null; then
	owner=$(stat -c %u:%g "$dir" 2>/dev/null || echo unknown)
	cat >&2 <<MSG
matrix-recorder: $dir is not writable by this container's user (uid $(id -u), gid $(id -g));
it belongs to $owner. Either run the container as its owner:
    docker run --user $owner ...        (compose: user: "$owner")
or give uid $(id -u) the folder on the host:  chown -R $(id -u):$(id -g) <the folder>.
The recorder creates its folders with recordings.dir_mode and its files with
recordings.file_mode (0700 and 0600 by default): set 0750/0640 to let the folder's group read
the recordings.
MSG
	exit 2
fi
rm -f "$probe"

if [ ! -e "$config" ]; then
	# The first run: the example config, with this image's paths and ports filled in.
	out=$(matrix-recorder -generate-config -c "$config" \
		-set data_dir="$dir/state" -set recordings.dir="$dir/recordings" \
		-set http.listen=:8080 -set metrics.listen=:9100 -set webrtc.udp_port=10000) || exit $?
	echo "$out"
	if echo "$out" | grep -q "^Before the recorder can start"; then
		cat <<MSG

Fill in $config (on the host: the config.yaml in the folder mounted at $dir), or pass the
values in the environment (MATRIX_RECORDER_MATRIX_HOMESERVER, MATRIX_RECORDER_MATRIX_USER_ID,
MATRIX_RECORDER_MATRIX_PASSWORD or MATRIX_RECORDER_MATRIX_PASSWORD_FILE), then start the
container again. For calls from other machines set webrtc.public_ips to the host's public
address and publish 10000/udp.
MSG
		exit 2
	fi
fi
exec matrix-recorder -c "$config" "$@"
