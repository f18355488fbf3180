#!/usr/bin/env bash
# Regenerates the test media in this folder with Debian 12's ffmpeg 5.1
# (libopus, libvpx, libx264, libaom). The files are committed; run this only
# to change them, then check the sizes (keep the folder well under 1 MB) and
# run `go test ./internal/testmedia/`.
set -euo pipefail
cd "$(dirname "$0")"

# Opus, 48 kHz stereo, 20 ms packets, one packet per Ogg page (page_duration
# 20000 us): testmedia reads pages with pion's oggreader, which does not
# expose packet boundaries inside a page. 5 s is a whole number of periods of
# both tones, so a looped sender stays phase-continuous.
for f in 440 660; do
	ffmpeg -v error -y -f lavfi -i "sine=frequency=$f:sample_rate=48000:duration=5" \
		-af "volume=0.5" -ac 2 -c:a libopus -b:a 48k -frame_duration 20 -application audio \
		-page_duration 20000 -map_metadata -1 -fflags +bitexact -flags:a +bitexact "tone$f.ogg"
done

# Video: 320x240, 15 fps, 3 s of ffmpeg's moving test pattern, a keyframe every
# second (15 frames), no hidden alt-ref frames and no B-frames, so every
# container frame is one displayed picture as a WebRTC encoder would send it.
src="testsrc2=size=320x240:rate=15:duration=3"
ffmpeg -v error -y -f lavfi -i "$src" -pix_fmt yuv420p -c:v libvpx -b:v 150k -g 15 -keyint_min 15 \
	-auto-alt-ref 0 -lag-in-frames 0 -deadline good -cpu-used 4 -fflags +bitexact vp8.ivf
ffmpeg -v error -y -f lavfi -i "$src" -pix_fmt yuv420p -c:v libvpx-vp9 -b:v 150k -g 15 -keyint_min 15 \
	-auto-alt-ref 0 -lag-in-frames 0 -row-mt 0 -deadline good -cpu-used 4 -fflags +bitexact vp9.ivf
# H.264 constrained baseline as Annex B, SPS/PPS repeated before every IDR,
# one slice per picture.
ffmpeg -v error -y -f lavfi -i "$src" -pix_fmt yuv420p -c:v libx264 -profile:v baseline -level 3.0 \
	-b:v 150k -g 15 -keyint_min 15 -sc_threshold 0 -bf 0 -x264-params "repeat-headers=1:slices=1:threads=1" \
	-bsf:v h264_mp4toannexb -fflags +bitexact -f h264 h264.h264
ffmpeg -v error -y -f lavfi -i "$src" -pix_fmt yuv420p -c:v libaom-av1 -b:v 150k -g 15 -keyint_min 15 \
	-usage realtime -cpu-used 8 -lag-in-frames 0 -fflags +bitexact av1.ivf
