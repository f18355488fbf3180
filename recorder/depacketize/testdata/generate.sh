#!/bin/sh
# Regenerates the fixtures the tests packetize and depacketize. They are committed; run this
# only to change them (the tests expect 30 frames at 15 fps with keyframes at frames 0 and 15,
# and 2 s of Opus in 20 ms packets). Needs Debian's ffmpeg (libvpx, libaom, libx264, libopus).
set -eu
cd "$(dirname "$0")"
src="-f lavfi -i testsrc=size=320x240:rate=15:duration=2"
ff="ffmpeg -hide_banner -loglevel error -y"
$ff $src -c:v libvpx -g 15 -b:v 150k -auto-alt-ref 0 vp8.ivf
$ff $src -c:v libvpx-vp9 -g 15 -b:v 150k -auto-alt-ref 1 -lag-in-frames 10 -cpu-used 4 vp9.ivf
$ff $src -c:v libaom-av1 -g 15 -b:v 150k -cpu-used 8 -usage realtime av1.ivf
# Two slices per picture, so that a picture spans several NAL units.
$ff $src -pix_fmt yuv420p -c:v libx264 -profile:v baseline -g 15 -bf 0 -b:v 150k -slices 2 -f h264 h264.h264
$ff -f lavfi -i sine=frequency=440:sample_rate=48000:duration=2 -c:a libopus -b:a 32k -frame_duration 20 opus.ogg
