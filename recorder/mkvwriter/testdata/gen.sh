#!/bin/sh
# Regenerates the fixtures in this directory. They are committed; run this only to change them.
# Needs Debian's ffmpeg (libvpx, libvpx-vp9, libaom-av1, libx264).
set -eu
cd "$(dirname "$0")"
src() { echo "testsrc=size=$1:rate=15:duration=$2"; }
common="-y -v error -f lavfi"
yuv="-pix_fmt yuv420p" # what WebRTC sends; testsrc alone makes libvpx-vp9 and libaom pick 4:4:4
ffmpeg $common -i "$(src 320x240 3)" $yuv -c:v libvpx -g 15 -b:v 120k -deadline realtime -cpu-used 8 vp8_320x240.ivf
ffmpeg $common -i "$(src 176x144 1)" $yuv -c:v libvpx -g 15 -b:v 60k -deadline realtime -cpu-used 8 vp8_176x144.ivf
ffmpeg $common -i "$(src 320x240 3)" $yuv -c:v libvpx-vp9 -g 15 -b:v 120k -deadline realtime -cpu-used 8 vp9_320x240.ivf
ffmpeg $common -i "$(src 176x144 1)" $yuv -c:v libvpx-vp9 -g 15 -b:v 60k -deadline realtime -cpu-used 8 vp9_176x144.ivf
ffmpeg $common -i "$(src 320x240 3)" $yuv -c:v libaom-av1 -g 15 -b:v 120k -cpu-used 8 -usage realtime av1_320x240.ivf
ffmpeg $common -i "$(src 176x144 1)" $yuv -c:v libaom-av1 -g 15 -b:v 60k -cpu-used 8 -usage realtime av1_176x144.ivf
# H.264 as WebRTC sends it: no B-frames, SPS/PPS before every IDR. 320x180 needs frame cropping.
ffmpeg $common -i "$(src 320x180 3)" $yuv -c:v libx264 -profile:v baseline -bf 0 -g 15 -b:v 120k \
	-bsf:v h264_mp4toannexb -f h264 h264_320x180.h264
ffmpeg $common -i "$(src 176x144 1)" $yuv -c:v libx264 -profile:v high -bf 0 -g 15 -b:v 60k \
	-bsf:v h264_mp4toannexb -f h264 h264_176x144_high.h264
# Opus as WebRTC sends it: 20 ms packets, 48 kHz stereo.
ffmpeg $common -i "sine=frequency=440:sample_rate=48000:duration=1" -ac 2 -c:a libopus -b:a 32k \
	-frame_duration 20 opus_1s.ogg
