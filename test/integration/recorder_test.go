package integration

import (
	"bytes"
	"encoding/csv"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/internal/caller"
	"github.com/matrix-recorder/matrix-recorder/internal/mediacheck"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// Tests of issue 3 (recordings you can trust) through the real homeserver, with the
// js-sdk-like 1:1 caller: network trouble, audio/video sync, resolution changes, parts,
// and a kill -9 of the real binary.

// liveCall is a connected 1:1 call to a bot, being recorded.
type liveCall struct {
	rb    *runningBot
	alice *caller.Client
	room  id.RoomID
	call  *caller.Call
	start time.Time
}

func startCall(t *testing.T, cfg func(*config.Config), opts caller.CallOptions) *liveCall {
	t.Helper()
	s := homeserver(t)
	c := botConfig(t, s)
	if cfg != nil {
		cfg(&c)
	}
	rb := startBot(t, c)
	alice := newCaller(t, s, "alice")
	room, ctx := directRoom(t, rb, alice, false, 2*time.Minute)
	start := time.Now()
	call := dial(t, ctx, alice, room, opts)
	if _, err := alice.WaitNotice(ctx, room, start, func(b string) bool { return strings.Contains(b, "Recording this call") }); err != nil {
		t.Fatalf("no recording notice: %v", err)
	}
	return &liveCall{rb: rb, alice: alice, room: room, call: call, start: start}
}

// hangup ends the call and returns the finished folder, its manifest and when the media
// stopped.
func (lc *liveCall) hangup(t *testing.T) (string, *recorder.Manifest, time.Time) {
	t.Helper()
	at := time.Now()
	if err := lc.call.Hangup(timeout(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	waitSummary(t, lc.alice, lc.room, lc.start)
	folder, m := finishedFolder(t, lc.rb)
	t.Logf("files:\n%s", describe(m))
	return folder, m, at
}

func ms(v int64) time.Duration { return time.Duration(v) * time.Millisecond }

// ffmpegMedia makes test media with ffmpeg's lavfi sources into dir/name.
func ffmpegMedia(t *testing.T, dir, name string, args ...string) []byte {
	t.Helper()
	mediacheck.Require(t, mediacheck.FFmpeg)
	path := filepath.Join(dir, name)
	cmd := exec.Command(mediacheck.FFmpeg, append(append([]string{"-v", "error", "-y"}, args...), path)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg %s: %v: %s", name, err, out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// opusArgs and vp8Args encode as the committed assets are (testmedia/assets/generate.sh):
// 20 ms Opus packets one per Ogg page; VP8 without alt-ref frames, a keyframe each second.
func opusArgs(src string) []string {
	return []string{"-f", "lavfi", "-i", src, "-ac", "2", "-c:a", "libopus", "-b:a", "64k", "-frame_duration", "20",
		"-application", "audio", "-page_duration", "20000", "-map_metadata", "-1"}
}

func vp8Args(src string, fps int, kbps int) []string {
	return []string{"-f", "lavfi", "-i", src, "-pix_fmt", "yuv420p", "-c:v", "libvpx", "-b:v", strconv.Itoa(kbps) + "k",
		"-g", strconv.Itoa(fps), "-keyint_min", strconv.Itoa(fps), "-auto-alt-ref", "0", "-lag-in-frames", "0",
		"-deadline", "realtime", "-cpu-used", "8"}
}

func opusMedia(t *testing.T, name string, data []byte) *caller.Media {
	t.Helper()
	frames, err := testmedia.ParseOgg(name, data)
	if err != nil {
		t.Fatal(err)
	}
	return &caller.Media{Capability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, Frames: frames}
}

func vp8Media(t *testing.T, name string, data []byte) *caller.Media {
	t.Helper()
	frames, err := testmedia.ParseIVF(name, data, webrtc.MimeTypeVP8)
	if err != nil {
		t.Fatal(err)
	}
	return &caller.Media{Capability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, Video: true, Frames: frames}
}

// TestIntegrationRecorderLossyAudio: 5 % loss, 2 % duplicates and 10 % of packets 40 ms
// late on the caller's path give audio that decodes without errors and lasts as long as
// the call to ±0.5 s, with the trouble counted in the manifest.
func TestIntegrationRecorderLossyAudio(t *testing.T) {
	net := &caller.Impairment{Loss: 0.05, Duplicate: 0.02, Reorder: 0.10, ReorderDelay: 40 * time.Millisecond, Seed: 11}
	lc := startCall(t, nil, caller.CallOptions{Audio: testmedia.Tone440, Network: net})
	time.Sleep(10 * time.Second)
	folder, m, stopped := lc.hangup(t)
	stats := lc.call.Network()
	audio := mustOne(t, m, recorder.SourceMicrophone)
	path := filepath.Join(folder, audio.File)
	d := ms(audio.DurationMs)
	checkFile(t, path, "opus", d)
	flowed := stopped.Sub(audio.StartedAt)
	pcm, err := mediacheck.DecodePCM(timeout(t, time.Minute), path, pcmRate)
	if err != nil {
		t.Fatal(err)
	}
	decoded := time.Duration(len(pcm)) * time.Second / pcmRate
	t.Logf("network %+v; stats %+v; media flowed %v, file %v, decodes to %v", stats, audio.Stats, flowed, d, decoded)
	if (d-flowed).Abs() > 500*time.Millisecond || (decoded-flowed).Abs() > 500*time.Millisecond {
		t.Errorf("file lasts %v and decodes to %v; media flowed for %v (want ±0.5 s)", d, decoded, flowed)
	}
	// Duplicates on the wire are dropped by SRTP's replay protection (RFC 3711 §3.3.2)
	// before they reach the recorder; the rest is counted. A few packets sent as the
	// call hung up never reach it.
	st := audio.Stats
	if stats.Lost == 0 || stats.Duplicated == 0 || stats.Delayed == 0 || st.PacketsLost+3 < stats.Lost || st.PacketsLost > stats.Lost+3 ||
		st.PacketsReceived > stats.Packets-stats.Lost || st.PacketsReceived+5 < stats.Packets-stats.Lost ||
		st.PacketsRecovered == 0 || st.PacketsRecovered > stats.Delayed {
		t.Errorf("manifest stats %+v do not reflect the network's %+v", st, stats)
	}
	// The tone is there all along: no stretch of the file is silent for longer than the
	// decoder's concealment of a few lost packets in a row.
	for _, s := range mediacheck.Silences(pcm, pcmRate, 300, 200*time.Millisecond) {
		if s.End < decoded-300*time.Millisecond {
			t.Errorf("silence from %v to %v in the middle of the tone", s.Start, s.End)
		}
	}
}

// TestIntegrationRecorderNACK: video loses 5 % of its packets on the way; the recorder's
// NACKs make the caller retransmit them (RTX) and the retransmissions fill the holes, so
// far fewer packets are lost in the file than on the wire.
func TestIntegrationRecorderNACK(t *testing.T) {
	dir := t.TempDir()
	// About 1 Mbit/s of VP8: enough packets for the loss to matter.
	ivf := ffmpegMedia(t, dir, "busy.ivf", vp8Args("testsrc2=size=640x360:rate=30:duration=4", 30, 1000)...)
	net := &caller.Impairment{Loss: 0.05, Kind: "video", Seed: 5}
	lc := startCall(t, nil, caller.CallOptions{VideoMedia: vp8Media(t, "busy.ivf", ivf), Network: net})
	time.Sleep(10 * time.Second)
	folder, m, _ := lc.hangup(t)
	stats := lc.call.Network()
	video := mustOne(t, m, recorder.SourceCamera)
	checkFile(t, filepath.Join(folder, video.File), "vp8", ms(video.DurationMs))
	st := video.Stats
	t.Logf("network %+v; stats %+v", stats, st)
	if stats.Lost < 20 || stats.Retransmissions == 0 {
		t.Fatalf("the impairment did not lose packets or nothing was retransmitted: %+v", stats)
	}
	if stats.Retransmissions > 4*stats.Lost {
		t.Errorf("%d retransmissions for %d lost packets: NACKs are repeated for packets already repaired", stats.Retransmissions, stats.Lost)
	}
	if st.PacketsRecovered == 0 || st.PacketsLost*4 > stats.Lost {
		t.Errorf("%d packets lost on the wire, %d retransmitted, %d still lost in the file, %d arrived late to fill holes",
			stats.Lost, stats.Retransmissions, st.PacketsLost, st.PacketsRecovered)
	}
	if total := st.Frames + st.FramesDropped; st.FramesDropped*10 > total {
		t.Errorf("%d of %d frames dropped", st.FramesDropped, total)
	}
}

// clickStarts returns where a click starts in pcm: a sample louder than threshold after
// at least 200 ms below it.
func clickStarts(pcm []int16, threshold int16) []time.Duration {
	var out []time.Duration
	quiet := 0
	for i, s := range pcm {
		if s > threshold || s < -threshold {
			if quiet >= pcmRate/5 {
				out = append(out, time.Duration(i)*time.Second/pcmRate)
			}
			quiet = 0
			continue
		}
		quiet++
	}
	return out
}

// flashTimes returns the timestamps of the frames of a video that are bright after a dark
// one, with ffprobe's signalstats.
func flashTimes(t *testing.T, path string) []time.Duration {
	t.Helper()
	out, err := exec.Command(mediacheck.FFprobe, "-v", "error", "-f", "lavfi", "-i", "movie="+path+",signalstats",
		"-show_entries", "frame=pts_time:frame_tags=lavfi.signalstats.YAVG", "-of", "csv=p=0").Output()
	if err != nil {
		t.Fatalf("ffprobe signalstats %s: %v", path, err)
	}
	rows, err := csv.NewReader(strings.NewReader(string(out))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var flashes []time.Duration
	bright := false
	for _, r := range rows {
		if len(r) < 2 {
			continue
		}
		pts, err1 := strconv.ParseFloat(r[0], 64)
		y, err2 := strconv.ParseFloat(r[1], 64)
		if err1 != nil || err2 != nil {
			continue
		}
		if y > 128 && !bright {
			flashes = append(flashes, time.Duration(pts*float64(time.Second)))
		}
		bright = y > 128
	}
	return flashes
}

// TestIntegrationRecorderAVSync: the caller sends a click and a white flash at the same
// moment every second (made with ffmpeg); on the manifest's timeline each flash in the
// .webm and its click in the .ogg are within ±20 ms of each other.
func TestIntegrationRecorderAVSync(t *testing.T) {
	mediacheck.Require(t, mediacheck.FFprobe)
	dir := t.TempDir()
	// 3 s loops: a 10 ms 1 kHz click at 0.5, 1.5, 2.5 s; a white frame at the same times
	// (20 fps, frames 10, 30, 50) on black.
	ogg := ffmpegMedia(t, dir, "click.ogg", opusArgs("aevalsrc=exprs='if(between(mod(t\\,1)\\,0.5\\,0.51)\\,0.8*sin(2*PI*1000*t)\\,0)':s=48000:d=3")...)
	ivf := ffmpegMedia(t, dir, "flash.ivf", append(vp8Args("color=c=black:s=320x240:r=20:d=3", 20, 300),
		"-vf", "geq=lum='if(eq(mod(N\\,20)\\,10)\\,235\\,16)':cb=128:cr=128")...)
	// The encoder adds its delay (pre-skip) in front and pads the end: cut the loop to
	// exactly 3 s like the video's, and remember that every click sits one pre-skip
	// later in the packets than in the signal.
	_, head, err := oggreader.NewWith(bytes.NewReader(ogg))
	if err != nil {
		t.Fatal(err)
	}
	encoderDelay := time.Duration(head.PreSkip) * time.Second / 48000
	audioMedia := opusMedia(t, "click.ogg", ogg)
	var loop time.Duration
	for i, f := range audioMedia.Frames {
		if loop += f.Duration; loop >= 3*time.Second {
			audioMedia.Frames = audioMedia.Frames[:i+1]
			break
		}
	}
	lc := startCall(t, nil, caller.CallOptions{AudioMedia: audioMedia, VideoMedia: vp8Media(t, "flash.ivf", ivf)})
	time.Sleep(9 * time.Second)
	folder, m, _ := lc.hangup(t)
	audio := mustOne(t, m, recorder.SourceMicrophone)
	video := mustOne(t, m, recorder.SourceCamera)
	apath, vpath := filepath.Join(folder, audio.File), filepath.Join(folder, video.File)
	checkFile(t, apath, "opus", ms(audio.DurationMs))
	checkFile(t, vpath, "vp8", ms(video.DurationMs))
	ctx := timeout(t, time.Minute)
	info, err := mediacheck.Probe(ctx, apath)
	if err != nil {
		t.Fatal(err)
	}
	pcm, err := mediacheck.DecodePCM(ctx, apath, pcmRate)
	if err != nil {
		t.Fatal(err)
	}
	// Decoded samples start at the stream's start time (the recorder's pre-skip); the
	// sender's encoder delay is taken off to get where the click was in the signal.
	var clicks, flashes []time.Duration
	for _, c := range clickStarts(pcm, 3000) {
		clicks = append(clicks, ms(audio.StartOffsetMs)+info.Streams[0].StartTime+c-encoderDelay)
	}
	for _, f := range flashTimes(t, vpath) {
		flashes = append(flashes, ms(video.StartOffsetMs)+f)
	}
	t.Logf("clicks %v\nflashes %v", clicks, flashes)
	matched := 0
	var worst time.Duration
	defer func() { t.Logf("%d flashes matched a click, the largest difference %v", matched, worst) }()
	for _, f := range flashes {
		i := sort.Search(len(clicks), func(i int) bool { return clicks[i] >= f })
		best := time.Duration(math.MaxInt64)
		for _, j := range []int{i - 1, i} {
			if j >= 0 && j < len(clicks) && (clicks[j]-f).Abs() < best.Abs() {
				best = clicks[j] - f
			}
		}
		if best.Abs() > 20*time.Millisecond {
			t.Errorf("flash at %v: nearest click %v away", f, best)
			continue
		}
		matched++
		worst = max(worst, best.Abs())
	}
	if matched < 5 {
		t.Errorf("only %d flashes matched a click (%d flashes, %d clicks)", matched, len(flashes), len(clicks))
	}
}

// TestIntegrationRecorderResolutionChange: a camera that switches from 320x240 to 640x360
// mid-call (same RTP stream) is recorded in one WebM file that decodes without errors at
// both sizes.
func TestIntegrationRecorderResolutionChange(t *testing.T) {
	mediacheck.Require(t, mediacheck.FFprobe)
	dir := t.TempDir()
	big := ffmpegMedia(t, dir, "big.ivf", vp8Args("testsrc2=size=640x360:rate=15:duration=3", 15, 400)...)
	lc := startCall(t, nil, caller.CallOptions{Audio: testmedia.Tone440, Video: testmedia.VP8})
	time.Sleep(4 * time.Second)
	if err := lc.call.SetFrames("usermedia-video", vp8Media(t, "big.ivf", big).Frames); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	folder, m, _ := lc.hangup(t)
	video := mustOne(t, m, recorder.SourceCamera)
	path := filepath.Join(folder, video.File)
	checkFile(t, path, "vp8", ms(video.DurationMs))
	if video.CodecParams.Width != 640 || video.CodecParams.Height != 360 {
		t.Errorf("manifest size %dx%d, want the largest, 640x360", video.CodecParams.Width, video.CodecParams.Height)
	}
	if d := ms(video.DurationMs); d < 7500*time.Millisecond || d > 9*time.Second {
		t.Errorf("video lasts %v, want about 8 s", d)
	}
	out, err := exec.Command(mediacheck.FFprobe, "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=width,height", "-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int{}
	for _, l := range strings.Fields(string(out)) {
		sizes[l]++
	}
	if sizes["320,240"] < 30 || sizes["640,360"] < 30 {
		t.Errorf("decoded frame sizes %v, want both 320x240 and 640x360", sizes)
	}
}

// TestIntegrationRecorderParts: a track that stops and comes back continues as the next
// part of the same logical track, in order, at its true offset: an ICE restart keeps the
// file, a microphone replaced by renegotiation (new SSRC) starts part 2, a device switch
// that keeps the RTP stream (replaceTrack) stays in the file, and a camera muted longer
// than split_after (gap_policy split) continues in part 2.
func TestIntegrationRecorderParts(t *testing.T) {
	lc := startCall(t, func(c *config.Config) {
		c.Recordings.GapPolicy = config.GapSplit
		c.Recordings.SplitAfter = config.Duration(2 * time.Second)
	}, caller.CallOptions{Audio: testmedia.Tone440, Video: testmedia.VP8})
	ctx := timeout(t, 2*time.Minute)
	time.Sleep(3 * time.Second)
	if err := lc.call.RestartICE(ctx); err != nil {
		t.Fatalf("ICE restart: %v", err)
	}
	time.Sleep(2 * time.Second)
	tone660, err := caller.AssetMedia(testmedia.Tone660)
	if err != nil {
		t.Fatal(err)
	}
	replacedAt := time.Now()
	if err := lc.call.ReplaceTrack(ctx, "usermedia-audio", tone660); err != nil {
		t.Fatalf("replace the microphone: %v", err)
	}
	time.Sleep(2 * time.Second)
	cam := lc.call.Sender("usermedia-video")
	mutedAt := time.Now()
	cam.Pause(testmedia.PauseSilent)
	time.Sleep(3 * time.Second)
	unmutedAt := time.Now()
	cam.Resume()
	time.Sleep(2 * time.Second)
	tone440, err := caller.AssetMedia(testmedia.Tone440)
	if err != nil {
		t.Fatal(err)
	}
	switchedAt := time.Now()
	if err := lc.call.SetFrames("usermedia-audio", tone440.Frames); err != nil {
		t.Fatalf("switch the microphone: %v", err)
	}
	time.Sleep(3 * time.Second)
	folder, m, stopped := lc.hangup(t)

	audio := trackBySource(m, recorder.SourceMicrophone)
	video := trackBySource(m, recorder.SourceCamera)
	on := func(at time.Time) time.Duration { return at.Sub(m.StartedAt) }
	if len(audio) != 2 || len(video) != 2 {
		t.Fatalf("want 2 audio and 2 video parts:\n%s", describe(m))
	}
	for _, parts := range [][]recorder.FileEntry{audio, video} {
		for i, e := range parts {
			if e.Track != parts[0].Track || e.Part != i+1 || e.Status != recorder.StatusComplete {
				t.Errorf("%s: track %s part %d status %s", e.File, e.Track, e.Part, e.Status)
			}
			if i > 0 && e.StartOffsetMs < parts[i-1].StartOffsetMs+parts[i-1].DurationMs-300 {
				t.Errorf("%s starts at %d ms, before part %d ends", e.File, e.StartOffsetMs, i)
			}
		}
	}
	// Audio: part 1 runs through the ICE restart up to the replacement, part 2 from there
	// to the end, through the device switch.
	near := func(what string, got time.Duration, want time.Duration) {
		t.Helper()
		if (got - want).Abs() > 700*time.Millisecond {
			t.Errorf("%s: %v, want about %v", what, got, want)
		}
	}
	near("audio part 1 end", ms(audio[0].StartOffsetMs+audio[0].DurationMs), on(replacedAt))
	near("audio part 2 start", ms(audio[1].StartOffsetMs), on(replacedAt))
	near("audio part 2 end", ms(audio[1].StartOffsetMs+audio[1].DurationMs), on(stopped))
	near("video part 1 end", ms(video[0].StartOffsetMs+video[0].DurationMs), on(mutedAt))
	// The unmuted camera starts again with its next keyframe (one a second).
	if got := ms(video[1].StartOffsetMs) - on(unmutedAt); got < -300*time.Millisecond || got > 1300*time.Millisecond {
		t.Errorf("video part 2 starts %v after the camera was unmuted, want within its keyframe interval", got)
	}
	if g := video[0].Gaps; len(g) == 0 || g[len(g)-1].Action != recorder.GapActionNewPart {
		t.Errorf("video part 1 must list the mute as a new_part gap: %+v", g)
	}
	for _, e := range append(audio, video...) {
		codec := "opus"
		if e.Kind == "video" {
			codec = "vp8"
		}
		checkFile(t, filepath.Join(folder, e.File), codec, ms(e.DurationMs))
	}
	// Part 2 holds the replaced microphone (660 Hz) and, after the switch, the new one
	// (440 Hz) at the right time.
	pcm, err := mediacheck.DecodePCM(timeout(t, time.Minute), filepath.Join(folder, audio[1].File), pcmRate)
	if err != nil {
		t.Fatal(err)
	}
	sw := on(switchedAt) - ms(audio[1].StartOffsetMs)
	window := func(from, to time.Duration) []int16 {
		a, b := int(from.Seconds()*pcmRate), int(to.Seconds()*pcmRate)
		return pcm[max(0, min(a, len(pcm))):max(0, min(b, len(pcm)))]
	}
	before, after := window(sw-time.Second, sw-200*time.Millisecond), window(sw+200*time.Millisecond, sw+time.Second)
	if mediacheck.ToneLevel(before, pcmRate, 660) < 4*mediacheck.ToneLevel(before, pcmRate, 440) ||
		mediacheck.ToneLevel(after, pcmRate, 440) < 4*mediacheck.ToneLevel(after, pcmRate, 660) {
		t.Errorf("the device switch is not where it happened in part 2 (at %v)", sw)
	}
}

// lastPacket returns the end of the last packet ffprobe can read from a file (it reads a
// file a crash left, with no duration in its header, up to its torn end).
func lastPacket(t *testing.T, path string) time.Duration {
	t.Helper()
	out, err := exec.Command(mediacheck.FFprobe, "-v", "error", "-show_entries", "packet=pts_time,duration_time", "-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", filepath.Base(path), err)
	}
	var end time.Duration
	for _, l := range strings.Fields(string(out)) {
		f := strings.Split(l, ",")
		pts, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		d := 0.0
		if len(f) > 1 {
			d, _ = strconv.ParseFloat(f[1], 64)
		}
		end = max(end, time.Duration((pts+d)*float64(time.Second)))
	}
	return end
}

// TestIntegrationRecorderKill9: the real binary is killed with SIGKILL mid-call. Every
// file it leaves plays up to at most flush_interval (1 s) before the kill; started
// again, the recorder repairs the folder (Duration and Cues, end of stream), marks it and
// every file interrupted, and the files pass ffprobe, ffmpeg, mkvinfo and opusinfo.
func TestIntegrationRecorderKill9(t *testing.T) {
	s := homeserver(t)
	cfg := botConfig(t, s)
	proc := startProcess(t, cfg)

	alice := newCaller(t, s, "alice")
	ctx := timeout(t, 3*time.Minute)
	room, err := alice.CreateDM(ctx, id.UserID(cfg.Matrix.UserID), false)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	call, err := alice.Call(ctx, room, caller.CallOptions{Audio: testmedia.Tone440, Video: testmedia.VP8})
	if err != nil {
		t.Fatalf("call not answered: %v", err)
	}
	defer call.Close()
	if err := call.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.WaitNotice(ctx, room, start, func(b string) bool { return strings.Contains(b, "Recording this call") }); err != nil {
		t.Fatalf("no recording notice: %v", err)
	}
	time.Sleep(7 * time.Second)
	killedAt := time.Now()
	if err := proc.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-proc.done
	call.Close()

	folders, _ := filepath.Glob(filepath.Join(cfg.Recordings.Dir, "*"))
	if len(folders) != 1 {
		t.Fatalf("want one call folder, got %v", folders)
	}
	folder := folders[0]
	m, err := recorder.ReadManifest(folder)
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != recorder.StatusRecording || len(m.Tracks) != 2 {
		t.Fatalf("manifest after the kill: status %s, %d files", m.Status, len(m.Tracks))
	}
	for _, e := range m.Tracks {
		path := filepath.Join(folder, e.File)
		end := lastPacket(t, path)
		lost := killedAt.Sub(e.StartedAt) - end
		t.Logf("%s: started %v before the kill, plays %v: %v lost", e.File, killedAt.Sub(e.StartedAt), end, lost)
		// flush_interval is 1 s; the extra 100 ms is how long a packet takes from the
		// caller to the file (network, reorder buffer) and the skew of the two clocks.
		if lost > 1100*time.Millisecond {
			t.Errorf("%s: %v before the kill lost, want at most 1 s", e.File, lost)
		}
	}

	// Start again: the folder is repaired before the bot logs in.
	proc = startProcess(t, cfg)
	m, err = recorder.ReadManifest(folder)
	if err != nil || m.Status != recorder.StatusInterrupted {
		t.Fatalf("the folder was not recovered: %+v, %v", m, err)
	}
	if m.EndedAt == nil || m.Interruption == "" {
		t.Errorf("manifest: %+v", m)
	}
	for _, e := range m.Tracks {
		if e.Status != recorder.StatusInterrupted || e.SHA256 == "" || e.DurationMs < 5000 {
			t.Errorf("%s: %+v", e.File, e)
		}
		codec := "opus"
		if e.Kind == "video" {
			codec = "vp8"
		}
		path := filepath.Join(folder, e.File)
		checkFile(t, path, codec, ms(e.DurationMs))
		if e.Kind == "video" {
			// Repaired: players can seek (Cues) and know the length (Duration).
			report, err := exec.Command(mediacheck.MKVInfoTool, "--all", path).Output()
			if err != nil || !strings.Contains(string(report), "Cue point") || !strings.Contains(string(report), "Duration:") {
				t.Errorf("%s: mkvinfo --all finds no Cues or Duration (%v)", e.File, err)
			}
		}
	}
	if err := proc.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-proc.done:
		if err != nil {
			t.Errorf("the recorder did not stop cleanly: %v", err)
		}
	case <-time.After(45 * time.Second):
		t.Error("the recorder did not stop")
	}
}
