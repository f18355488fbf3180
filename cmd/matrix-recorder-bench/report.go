package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Section titles of BENCHMARKS.md, in order. A run rewrites the sections of the parts it
// ran and keeps the others as they were (each section says when and how it was measured).
const (
	secHot     = "Hot path"
	secCore    = "Recorder core vs GStreamer"
	secSide    = "The whole bot vs a plain pion recorder"
	secProfile = "Where the whole bot's CPU goes"
	secLiveKit = "The LiveKit path"
	secSoak    = "Soak"
	secLadder  = "The whole bot: the largest load"
	secFleet   = "Fleet"
	// secTried is written by hand (what was tried to make the bot cheaper, with its
	// measurements); a run never rewrites it and always keeps it.
	secTried = "What was tried (issue 16)"
)

var sectionOrder = []string{secHot, secCore, secSide, secProfile, secTried, secLiveKit, secSoak, secLadder, secFleet}

// report collects every part's results and renders BENCHMARKS.md.
type report struct {
	opts      options
	started   time.Time
	hot       []hotRow
	core      []coreRow
	side      []sidePair
	sideErr   string
	profiles  []profileSummary
	livekit   []lkRow
	lkErr     string
	soak      *soakResult
	soakErr   string
	ladder    []stepRow
	ladderErr string
	fleet     []fleetRow
	fleetErr  string
	// partLoad is the load average just before each part started any process.
	partLoad map[string]float64
}

// profileSummary is the top of one CPU profile of the bot.
type profileSummary struct {
	Name     string
	Heap     bool // a heap profile (in-use bytes), not CPU
	Files    []string
	Duration string
	Flat     []profileLine
	Cum      []profileLine
}

type writer struct{ strings.Builder }

func (w *writer) f(format string, a ...any) { fmt.Fprintf(&w.Builder, format, a...) }

// loaded is a row of a section's table: the load spans around its measured windows.
type loaded interface{ loads() []loadSpan }

func (c coreRow) loads() []loadSpan    { return []loadSpan{c.Load, c.GstEachLoad} }
func (p sidePair) loads() []loadSpan   { return []loadSpan{p.Bot.Load, p.Plain.Load} }
func (x lkRow) loads() []loadSpan      { return []loadSpan{x.Load} }
func (x stepRow) loads() []loadSpan    { return []loadSpan{x.Load} }
func (x fleetRow) loads() []loadSpan   { return []loadSpan{x.Load} }
func (x soakResult) loads() []loadSpan { return []loadSpan{x.Load} }

// section starts a part's section with the line under its title (measured), and the
// load around the measured windows of its rows.
func section[T loaded](r report, part string, rows []T) *writer {
	var loads []loadSpan
	for _, x := range rows {
		loads = append(loads, x.loads()...)
	}
	w := &writer{}
	r.measured(w, part, loads)
	return w
}

// measured is the line under each section's title: when, where, how busy, and the command.
func (r report) measured(w *writer, part string, loads []loadSpan) {
	w.f("Measured %s on %s", r.started.UTC().Format("2006-01-02 15:04 UTC"), machine())
	before, ok := r.partLoad[part]
	if ok {
		w.f("; load average (1 min, as `uptime` prints it) %.1f before the part started", before)
	}
	if lr := loadRange(loads); lr != "" {
		w.f(", %s around the measured windows (the bench's own processes included)", lr)
	}
	busy := ok && before > float64(runtime.NumCPU())/2
	for _, l := range loads {
		busy = busy || l.busy(runtime.NumCPU())
	}
	if busy {
		w.f(". **Measured under load**: the machine is shared with other engineers' builds and tests and was busy; every CPU time below includes the cost of sharing %d cores (waiting, caches, switches) and is an upper bound", runtime.NumCPU())
	}
	w.f(". Command: `%s`.\n\n", r.command())
}

func (r report) command() string {
	cmd := "go run -tags goolm ./cmd/matrix-recorder-bench"
	if len(r.opts.args) > 0 {
		cmd += " " + strings.Join(r.opts.args, " ")
	}
	return cmd
}

// markdown renders the sections this run measured; old holds the previous file's
// sections, kept for the parts not run.
func (r report) markdown(old map[string]string) string {
	fresh := map[string]string{}
	if len(r.hot) > 0 {
		fresh[secHot] = r.hotSection()
	}
	if len(r.core) > 0 {
		fresh[secCore] = r.coreSection()
	}
	if len(r.side) > 0 || r.sideErr != "" {
		fresh[secSide] = r.sideSection()
	}
	if len(r.profiles) > 0 {
		fresh[secProfile] = r.profileSection()
	}
	if len(r.livekit) > 0 || r.lkErr != "" {
		fresh[secLiveKit] = r.livekitSection()
	}
	if r.soak != nil || r.soakErr != "" {
		fresh[secSoak] = r.soakSection()
	}
	if len(r.ladder) > 0 || r.ladderErr != "" {
		fresh[secLadder] = r.ladderSection()
	}
	if len(r.fleet) > 0 || r.fleetErr != "" {
		fresh[secFleet] = r.fleetSection()
	}
	var w writer
	w.f("# Benchmarks\n\n")
	w.f("Run by hand, not in CI, from the repository root, as root (for the private network namespace that keeps\n")
	w.f("Dendrite's lookups on the machine):\n\n")
	w.f("```\nunshare -n sh -c 'ip link set lo up; go run -tags goolm ./cmd/matrix-recorder-bench -parts hotpath,core,side,livekit'\n")
	w.f("unshare -n sh -c 'ip link set lo up; go run -tags goolm ./cmd/matrix-recorder-bench -parts soak'   # an hour\n")
	w.f("unshare -n sh -c 'ip link set lo up; go run -tags goolm ./cmd/matrix-recorder-bench -parts fleet'  # a few minutes\n```\n\n")
	w.f("It needs ffmpeg and GStreamer (`apt-get install ffmpeg gstreamer1.0-tools gstreamer1.0-plugins-good\n")
	w.f("gstreamer1.0-plugins-bad`) and builds Dendrite and livekit-server on first use like the integration tests;\n")
	w.f("the fleet part also needs PostgreSQL's server (`apt-get install postgresql`) and the S3 server of the tests.\n")
	w.f("A run rewrites the sections of the parts it ran (`-parts`) and keeps the others; each section says when,\n")
	w.f("where and under which load it was measured. CPU is user+system time from `/proc/<pid>/stat` over the\n")
	w.f("measured window only (not start-up or finalising), memory the resident set (`VmRSS`) unless a table says\n")
	w.f("otherwise. `-profile DIR` also writes CPU profiles of the bot (through `http.pprof`) for every bot window.\n\n")
	for _, s := range sectionOrder {
		text, ok := fresh[s]
		if !ok {
			text, ok = old[s]
		}
		if ok {
			w.f("## %s\n\n%s", s, strings.TrimLeft(text, "\n"))
			if !strings.HasSuffix(text, "\n\n") {
				w.f("\n")
			}
		}
	}
	return strings.TrimRight(w.String(), "\n") + "\n"
}

// sections splits a BENCHMARKS.md into its "## " sections, by title.
func sections(md string) map[string]string {
	out := map[string]string{}
	var title string
	var body strings.Builder
	flush := func() {
		if title != "" {
			out[title] = body.String()
		}
	}
	for _, l := range strings.SplitAfter(md, "\n") {
		if t, ok := strings.CutPrefix(l, "## "); ok {
			flush()
			title = strings.TrimSpace(t)
			body.Reset()
			continue
		}
		if title != "" {
			body.WriteString(l)
		}
	}
	flush()
	return out
}

func (r report) hotSection() string {
	var w writer
	r.measured(&w, "hotpath", nil)
	w.f("`%s`: packets through the whole track pipeline\n", hotBenchArgs)
	w.f("(reorder buffer, depacketizer, timeline, container writer, a flush every second and the manifest\n")
	w.f("refresh every 5 s of media, all in simulated time); one op is one packet.\n\n")
	w.f("| Benchmark | ns/packet | allocations/packet in steady state | B/op | allocs/op |\n|---|---|---|---|---|\n")
	for _, h := range r.hot {
		w.f("| %s | %s | %s | %s | %s |\n", h.Name, h.NsPerOp, h.SteadyAllocs, h.BytesPerOp, h.AllocsPerOp)
	}
	w.f("\nThe packet path itself allocates nothing (`TestPacketPathDoesNotAllocate` checks it); the few\n")
	w.f("allocations in steady state are the manifest refresh (JSON) every 5 s and Matroska's cues (bounded).\n")
	w.f("ns/packet includes that refresh's file system calls (an atomic rewrite of manifest.json).\n\n")
	return w.String()
}

func ratio(a, b float64) string {
	if b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func (r report) coreSection() string {
	w := section(r, "core", r.core)
	w.f("N Opus RTP streams (20 ms packets, real time) sent over UDP on loopback. In a first window every packet\n")
	w.f("goes to three receivers running side by side:\n\n")
	w.f("- **core**: the recorder core in its own process (one session, one track per stream, each reading its own\n")
	w.f("  socket, writing Ogg Opus as the bot does);\n")
	w.f("- **reads alone**: the same process reading its sockets and discarding the packets, no recorder (what a\n")
	w.f("  goroutine blocked in `Read` on each socket costs in Go; the recorder's own work is the difference);\n")
	w.f("- **GStreamer, one process**: one `gst-launch-1.0` with a branch per stream.\n\n")
	w.f("In a second window of the same length the streams go to **GStreamer, a process per stream**: N\n")
	w.f("`gst-launch-1.0`, one pipeline each (no contention between branches), alone, since N processes would\n")
	w.f("take most of the cores from a single one beside them (the kernel shares CPU time by thread); its memory\n")
	w.f("is the sum of the processes' proportional set size (PSS), since their resident sets each count the\n")
	w.f("shared libraries. Each pipeline is `udpsrc ! rtpjitterbuffer latency=100 ! rtpopusdepay ! opusparse !\n")
	w.f("oggmux ! filesink` (`opusparse`, from plugins-bad, makes the Opus headers `oggmux` needs: without it\n")
	w.f("GStreamer 1.22 writes a 31-byte file and drops every packet).\n\n")
	w.f("| Streams | Packets each | Core µs/packet | Reads alone µs/packet | GStreamer one process µs/packet (÷ core) | GStreamer process per stream µs/packet (÷ core) | Memory at the end (per track growth): core / GStreamer one / per stream (PSS) | Audio recorded: core / one / per stream | Load before → after: first window / second |\n")
	w.f("|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range r.core {
		cu := c.Core.usPerPacket(c.Packets)
		gu, eu := c.Gst.usPerPacket(c.Packets), c.GstEach.usPerPacket(c.GstEachPackets)
		sent := (time.Duration(c.Sent) * packetPeriod).Seconds()
		eachSent := (time.Duration(c.GstEachSent) * packetPeriod).Seconds()
		w.f("| %d | %d | %.1f | %.1f | %.1f (%sx) | %.1f (%sx) | %s (%s) / %s (%s) / %s (%s) | %.0f%% / %.0f%% / %.0f%% | %s / %s |\n",
			c.Streams, c.Packets, cu, c.Floor.usPerPacket(c.Packets), gu, ratio(gu, cu), eu, ratio(eu, cu),
			mib(c.Core.RSS), kib(c.Core.perTrack(c.Streams)), mib(c.Gst.RSS), kib(c.Gst.perTrack(c.Streams)),
			mib(c.GstEach.RSS), kib(c.GstEach.perTrack(c.Streams)),
			100*c.CoreAudio.Seconds()/sent, 100*c.GstAudio.Seconds()/sent, 100*c.GstEachAudio.Seconds()/eachSent, c.Load, c.GstEachLoad)
	}
	w.f("\nPer-track growth is from the idle receivers (all tracks set up, no packets yet) to the end of the\n")
	w.f("window, divided by N; the total at the end includes what the idle process or processes hold (for a\n")
	w.f("process per stream, N runtimes and pipelines). \"Audio recorded\" compares the audio in each\n")
	w.f("recorder's files (ffprobe's packet count; the core's own frame count) with what was sent, so each is\n")
	w.f("seen to keep up (below 100%%: packets were dropped, usually by the kernel because a socket was not read\n")
	w.f("in time).\n\n")
	return w.String()
}

func (r report) sideSection() string {
	w := section(r, "side", r.side)
	w.f("N simultaneous 1:1 calls (MSC2746, unencrypted rooms) from N pion PeerConnections in the bench process,\n")
	w.f("each sending Opus and 1 Mbit/s VP8 (640x360, 30 fps, a keyframe a second) over loopback with DTLS-SRTP,\n")
	w.f("NACK and RTCP, through a real Dendrite, first to the bot (the real binary), then the same calls to the\n")
	w.f("plain pion recorder (rounds alternate the order). The bot is a Matrix bot and cannot be driven without\n")
	w.f("Matrix, so the baseline answers the same signalling through the same Dendrite: `plainrecorder/` is a\n")
	w.f("deliberately plain program, its own process, with pion's defaults (`webrtc.NewAPI`, default codecs,\n")
	w.f("`RegisterDefaultInterceptors`; loopback candidates on and mDNS off, as the bot has them), `OnTrack` →\n")
	w.f("one goroutine per track calling `ReadRTP`, pion's `oggwriter` for Opus with a gap filler (a silence\n")
	w.f("frame per 20 ms of RTP timestamp jump, so its files are as long as the call) and `ivfwriter` for VP8.\n")
	w.f("Each step starts a fresh process of the recorder under test.\n\n")
	w.f("| Calls | Round | Recorder | CPU per participant-second | µs per packet | Memory per call | Resident set idle → end | All files final after the last hang-up | Packets lost of sent | Kernel UDP drops | Frames not written | Calls recorded whole (worst shortfall) | Callers' CPU (%% of a core) | Load before → after |\n")
	w.f("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range r.side {
		for _, x := range []stepRow{p.Bot, p.Plain} {
			if x.Calls == 0 {
				continue
			}
			dropped := fmt.Sprint(x.Dropped)
			if x.Target != "bot" {
				dropped = "not counted"
			}
			w.f("| %d | %d | %s | %.2f ms | %.1f | %s | %s → %s | %.2f s | %d of %d | %d | %s | %d/%d (%.1f s) | %.0f%% | %s |\n",
				x.Calls, p.Round, x.Target, ms(x.cpuPerParticipant()), x.usPerPacket(), kib(x.memPerCall()), mib(x.RSSIdle), mib(x.RSS),
				x.FinalAfter.Seconds(), x.Lost, x.Sent, x.KernelDrops, dropped, x.Files.Whole, x.Calls, x.Files.Shortfall.Seconds(), 100*x.SenderCPU.Seconds()/x.Seconds, x.Load)
		}
	}
	w.f("\nThe goals of issue 16, bot ÷ plain pion recorder in the same round:\n\n")
	w.f("| Calls | Round | CPU per participant-second (goal ≤ 0.5) | Memory per call (goal ≤ 0.4) | Bot's files final within 1 s of the last hang-up | Every call recorded whole by both | Comparable |\n")
	w.f("|---|---|---|---|---|---|---|\n")
	for _, p := range r.side {
		if p.Bot.Calls == 0 || p.Plain.Calls == 0 {
			continue
		}
		c := float64(p.Bot.cpuPerParticipant()) / float64(max(1, p.Plain.cpuPerParticipant()))
		m := p.Bot.memPerCall() / max(1, p.Plain.memPerCall())
		comparable := "yes"
		for _, x := range []stepRow{p.Bot, p.Plain} {
			if x.Sent > 0 && float64(x.Lost) > 0.01*float64(x.Sent) {
				comparable = fmt.Sprintf("no: the %s lost %.0f%% of the packets, its CPU covers only what it read", x.Target, 100*float64(x.Lost)/float64(x.Sent))
			}
		}
		w.f("| %d | %d | %.2f %s | %.2f %s | %.2f s %s | %s | %s |\n", p.Calls, p.Round, c, mark(c <= 0.5), m, mark(m <= 0.4),
			p.Bot.FinalAfter.Seconds(), mark(p.Bot.FinalAfter <= time.Second), mark(p.Bot.lossless() && p.Plain.Files.Whole == p.Plain.Calls), comparable)
	}
	if r.sideErr != "" {
		w.f("\nThe run stopped: %s\n", r.sideErr)
	}
	w.f("\nCPU per participant-second is the recorder's CPU time in the window divided by the calls and the\n")
	w.f("window's seconds; µs per packet divides it by the media packets the callers sent in the window (audio\n")
	w.f("and video). Memory per call is the growth of the recorder's resident set from the idle process (started,\n")
	w.f("synced, before the first call) to the end of the window, divided by N. \"All files final\" runs from the\n")
	w.f("moment the last caller's `m.call.hangup` was sent (the homeserver had accepted it) until the last call's\n")
	w.f("files were closed: the bot's manifest lists every file as complete (polled every 20 ms; it says `finished` once\n")
	w.f("the files' SHA-256 are in it, a little later), the plain recorder prints a line once its writers are closed.\n")
	w.f("Both learn of the hang-up the same way, from `m.call.hangup` through their sync.\n")
	w.f("Packets lost: the bot's manifest (lost or too late to be written); the plain recorder's own count of\n")
	w.f("sequence numbers never received; \"of sent\" counts the callers' media packets over the whole calls.\n")
	w.f("Kernel UDP drops are datagrams the kernel dropped in the bench's network namespace during the step because a\n")
	w.f("socket's receive buffer was full (`RcvbufErrors`; nearly all of them the recorder's: it did not read in\n")
	w.f("time). A call is recorded whole when it has its audio and its video file and\n")
	w.f("ffprobe counts at least the call's length minus %v of media in each (the first moments of the connection\n", wholeSlack)
	w.f("and the wait for the first keyframe); the worst shortfall of any file is in brackets. The callers run on\n")
	w.f("the same cores (their CPU is a column).\n\n")
	return w.String()
}

func mark(ok bool) string {
	if ok {
		return "✓"
	}
	return "✗"
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func (r report) profileSection() string {
	var w writer
	r.measured(&w, "side", nil)
	w.f("CPU profiles of the bot (`http.pprof`, taken over the measured windows with `-profile DIR`; the plain\n")
	w.f("recorder's through its `-pprof`), top functions by own time (flat) and with callees (cumulative), as\n")
	w.f("`go tool pprof -top` prints them; and the live heap (in-use bytes, after a collection) at the end of a\n")
	w.f("window, by the function that allocated it.\n\n")
	for _, p := range r.profiles {
		w.f("### %s\n\n%s. Files: %s.\n\n", p.Name, p.Duration, strings.Join(p.Files, ", "))
		w.f("| Flat | Flat %% | Function (by flat) | | Cumulative | Cum %% | Function (by cumulative) |\n|---|---|---|---|---|---|---|\n")
		for i := range max(len(p.Flat), len(p.Cum)) {
			var a, b profileLine
			if i < len(p.Flat) {
				a = p.Flat[i]
			}
			if i < len(p.Cum) {
				b = p.Cum[i]
			}
			w.f("| %s | %s | `%s` | | %s | %s | `%s` |\n", a.Flat, a.FlatPct, a.Func, b.Cum, b.CumPct, b.Func)
		}
		w.f("\n")
	}
	return w.String()
}

func (r report) livekitSection() string {
	w := section(r, "livekit", r.livekit)
	w.f("N participants of an Element Call call on the harness's livekit-server (v1.13.5): each joins as Element\n")
	w.f("Call does on the Matrix side (a MatrixRTC session membership, a LiveKit token from the JWT service with its\n")
	w.f("OpenID token) and publishes Opus and 1 Mbit/s VP8 (640x360, 30 fps) with server-sdk-go from the bench\n")
	w.f("process; one of them types `!start`, the bot (the real binary) joins the LiveKit room and subscribes to\n")
	w.f("every track, unencrypted. In the loopback-only network namespace the clients reach the SFU through its\n")
	w.f("TURN relay on 127.0.0.1 (server-sdk-go offers no loopback candidates), the bot included.\n\n")
	w.f("| Publishers | Tracks | Bot CPU (%% of a core) | CPU per track-second | Memory per track | Bot resident set idle → end | Packets received | Lost or late | Frames not written | Publishers recorded whole (worst shortfall) | livekit-server CPU (%% of a core) | Publishers' CPU (%% of a core) | Files final after `!stop` | Load before → after |\n")
	w.f("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, x := range r.livekit {
		w.f("| %d | %d | %.0f%% | %.2f ms | %s | %s → %s | %d | %d | %d | %d/%d (%.1f s) | %.0f%% | %.0f%% | %.2f s | %s |\n",
			x.Publishers, x.tracks(), 100*x.CPU.Seconds()/x.Seconds, ms(x.cpuPerTrack()), kib(float64(x.RSS-x.RSSIdle)/float64(x.tracks())),
			mib(x.RSSIdle), mib(x.RSS), x.Received, x.Lost, x.Dropped, x.Files.Whole, x.Publishers, x.Files.Shortfall.Seconds(),
			100*x.SFUCPU.Seconds()/x.Seconds, 100*x.SenderCPU.Seconds()/x.Seconds, x.FinalAfter.Seconds(), x.Load)
	}
	if r.lkErr != "" {
		w.f("\nThe run stopped: %s\n", r.lkErr)
	}
	w.f("\nMemory per track is the growth of the bot's resident set from the bot in the call's room before\n")
	w.f("`!start` to the end of the window, divided by the 2N tracks. Packets received and lost come from the\n")
	w.f("manifest (the whole recording). A publisher is recorded whole when its audio and video files each hold\n")
	w.f("at least the time from \"every track recording\" to `!stop`, minus %v. The SFU and the publishers\n", wholeSlack)
	w.f("share the cores with the bot.\n\n")
	return w.String()
}

func (r report) soakSection() string {
	var rows []soakResult
	if r.soak != nil {
		rows = append(rows, *r.soak)
	}
	w := section(r, "soak", rows)
	if r.soak == nil {
		w.f("The soak did not finish: %s\n\n", r.soakErr)
		return w.String()
	}
	s := r.soak
	w.f("%d simultaneous 1:1 calls (as in the bot vs plain pion table) recorded by the bot for %v; every %v\n", s.Calls, s.Duration, s.Interval)
	w.f("the bench reads the bot's resident set (`/proc/<pid>/status`: all of it, its anonymous part `RssAnon` and\n")
	w.f("its file-backed part `RssFile`), the Go heap's GC goal (`go_memstats_next_gc_bytes`, about twice the live\n")
	w.f("heap after the last collection), `go_goroutines` from its `/metrics` and its threads. It fails (non-zero\n")
	w.f("exit) if the anonymous resident set at the end is more than %.0f%% above the sample one interval in, or the\n", 100*soakMaxRSSGrowth)
	w.f("goroutines grew (the least of the last three samples against the sample one interval in, so that a\n")
	w.f("request in flight at one sample is not taken for a leak), or a call is not ended by the bot or not\n")
	w.f("recorded whole. The growth from minute %.0f (or a quarter of a shorter run) to the end is printed beside\n", soakWarmup.Minutes())
	w.f("it, not judged: it tells a warm-up from a leak. The file-backed part is pages of the binary and its\n")
	w.f("libraries, which grow as code runs for the first time (summaries, uploads, notices) up to the binary's\n")
	w.f("size; they are shared and reclaimable, and not judged. At the end each caller sends `m.call.hangup`; one\n")
	w.f("the homeserver refuses (a 5xx, 429 or no answer) is sent again with the same transaction ID for up to\n")
	w.f("%v while the call goes on, then the caller closes its connection. \"Files final\" is every file of a\n", hangupRetryFor)
	w.f("call listed complete in its manifest (closed and synced), \"finished\" the manifest saying so (with every\n")
	w.f("file's SHA-256), both polled every %v. Every file is then checked with ffprobe.\n\n", pollFinal)
	verdict := "**passed**"
	if len(s.Failed) > 0 {
		verdict = "**failed**: " + strings.Join(s.Failed, "; ")
	}
	w.f("Result: %s.\n\n", verdict)
	if len(s.Samples) >= 3 {
		base, warm, end := s.Samples[1], s.Samples[s.Warm], s.Samples[len(s.Samples)-1]
		w.f("- Anonymous resident set: %+.1f%% from the first interval (%s at %v → %s at %v; goal < %.0f%% %s), %+.1f%% from %v to the end (%s → %s).\n",
			100*s.AnonGrowth, mib(base.RSSAnon), base.At, mib(end.RSSAnon), end.At, 100*soakMaxRSSGrowth, mark(s.AnonGrowth <= soakMaxRSSGrowth),
			100*s.WarmAnonGrowth, warm.At, mib(warm.RSSAnon), mib(end.RSSAnon))
		w.f("- Whole resident set: %+.1f%% from the first interval (%s → %s), %+.1f%% from %v; file-backed %s → %s.\n",
			100*s.RSSGrowth, mib(base.RSS), mib(end.RSS), 100*s.WarmRSSGrowth, warm.At, mib(base.RSSFile), mib(end.RSSFile))
		lo, hi := warm.GCGoal, warm.GCGoal
		for _, x := range s.Samples[s.Warm:] {
			lo, hi = min(lo, x.GCGoal), max(hi, x.GCGoal)
		}
		w.f("- GC goal: %s at %v, %s at the end; between %s and %s from %v on.\n", mib(base.GCGoal), base.At, mib(end.GCGoal), mib(lo), mib(hi), warm.At)
		if s.goMemory() {
			w.f("- Go's own memory (heap spans in use, free spans not yet returned, stacks): %s at %v, %s at %v, %s at the end; the rest of the anonymous resident set (C memory through cgo, the runtime's other structures): %s, %s, %s.\n",
				mib(base.goOwn()), base.At, mib(warm.goOwn()), warm.At, mib(end.goOwn()), mib(base.RSSAnon-base.goOwn()), mib(warm.RSSAnon-warm.goOwn()), mib(end.RSSAnon-end.goOwn()))
		}
		w.f("- Goroutines: %d at %v, %d at the end (growth %+d, judged on the least of the last three samples), %d to %d in between; threads %d → %d.\n",
			base.Goroutines, base.At, end.Goroutines, s.GoroutineGrowth, s.GoroutinesMin, s.GoroutinesMax, base.Threads, end.Threads)
	}
	if s.Skipped > 0 {
		w.f("- %d samples could not be read (the bot's `/metrics` did not answer) and are left out.\n", s.Skipped)
	}
	if s.Ends != nil {
		first := s.countEnds(func(c soakCall) bool { return c.accepted() && c.HangupTries == 1 })
		w.f("- Hang-ups: %d of %d accepted at the first try, %d after retries, %d never accepted.\n",
			first, s.Calls, s.Accepted-first, s.Calls-s.Accepted)
		switch {
		case s.Accepted == 0:
			w.f("- Files final: no hang-up was accepted, so there is no time from it.\n")
		case s.FinalCalls == s.Accepted:
			w.f("- Files final %.2f s after the last accepted hang-up (%d calls; goal ≤ 1 s %s; at most %.2f s after a call's own hang-up).\n",
				s.FinalAfter.Seconds(), s.Accepted, mark(s.FinalAfter <= time.Second), s.WorstFinal.Seconds())
		default:
			w.f("- Files final: only %d of the %d calls whose hang-up was accepted had their files final within the wait.\n", s.FinalCalls, s.Accepted)
		}
		if s.Accepted > 0 && s.FinishedCalls == s.Accepted {
			w.f("- Manifests finished %.2f s after the last accepted hang-up (after hashing every file).\n", s.FinishedAfter.Seconds())
		} else if s.Accepted > 0 {
			w.f("- Manifests finished: only %d of the %d calls whose hang-up was accepted within the wait.\n", s.FinishedCalls, s.Accepted)
		}
		w.f("- Calls ended by the bot: %d of %d within %v of the hang-ups.\n", s.countEnds(soakCall.ended), s.Calls, soakEndWait)
		w.f("- ffprobe: %d files read, %d of %d calls recorded whole (each file holds the call minus at most %v; worst shortfall %.1f s); packets lost or late %d.\n",
			s.Files.Files, s.Files.Whole, s.Calls, wholeSlack, s.Files.Shortfall.Seconds(), s.Lost)
		for _, p := range s.Files.Problems {
			w.f("  - %s\n", p)
		}
	}
	if s.BotLog != "" {
		w.f("- The bot's log: `%s`.\n", s.BotLog)
	}
	w.f("\n")
	if odd := s.oddEnds(); len(odd) > 0 {
		w.f("Calls whose hang-up was refused or that the bot did not end (times from the caller's accepted hang-up, or\n")
		w.f("from its closed connection when none was accepted):\n\n")
		w.f("| Call | Hang-up tries | Last refusal | Manifest at the last look | Files still written | Files final after | Finished after |\n|---|---|---|---|---|---|---|\n")
		for _, c := range odd {
			from := c.HangupAt
			if !c.accepted() {
				from = c.ClosedAt
			}
			refusal := c.HangupErr
			if refusal == "" {
				refusal = "(accepted)"
			}
			status := c.Status
			if c.Interruption != "" {
				status += " (" + c.Interruption + ")"
			}
			w.f("| `%s` | %d | %s | %s | %d | %s | %s |\n", c.ID, c.HangupTries, cell(refusal), cell(status), c.Recording, since(from, c.FinalAt), since(from, c.FinishedAt))
		}
		w.f("\n")
	}
	if s.goMemory() {
		w.f("| Time | Clock (UTC) | Resident set | Anonymous | File-backed | GC goal | Go heap in use | Go heap free, kept | Go stacks | Anonymous less Go's | Goroutines | Threads | Bot CPU so far | Load |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, x := range s.Samples {
			w.f("| %v | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %d | %.0f s | %.1f |\n", x.At, x.Clock.Format("15:04:05"), mib(x.RSS), mib(x.RSSAnon), mib(x.RSSFile), mib(x.GCGoal),
				mib(x.HeapInuse), mib(x.HeapKept), mib(x.Stacks), mib(x.RSSAnon-x.goOwn()), x.Goroutines, x.Threads, x.CPU.Seconds(), x.Load)
		}
	} else {
		w.f("| Time | Clock (UTC) | Resident set | Anonymous | File-backed | GC goal | Goroutines | Threads | Bot CPU so far | Load |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for _, x := range s.Samples {
			w.f("| %v | %s | %s | %s | %s | %s | %d | %d | %.0f s | %.1f |\n", x.At, x.Clock.Format("15:04:05"), mib(x.RSS), mib(x.RSSAnon), mib(x.RSSFile), mib(x.GCGoal),
				x.Goroutines, x.Threads, x.CPU.Seconds(), x.Load)
		}
	}
	w.f("\n")
	if len(s.Heap) > 0 {
		w.f("What grew in the bot's live heap from the sample one interval in to the end (`go tool pprof -top\n")
		w.f("-sample_index=inuse_space -diff_base`, heap profiles after a collection, taken with `-profile DIR`;\n")
		w.f("%s):\n\n", s.HeapTotal)
		w.f("| Flat | Flat %% | Cumulative | Cum %% | Function |\n|---|---|---|---|---|\n")
		for _, l := range s.Heap {
			w.f("| %s | %s | %s | %s | `%s` |\n", l.Flat, l.FlatPct, l.Cum, l.CumPct, l.Func)
		}
		w.f("\n")
	}
	return w.String()
}

// oddEnds are the calls whose hang-up needed retries or was refused, or that did not end.
func (s *soakResult) oddEnds() []soakCall {
	var out []soakCall
	for _, c := range s.Ends {
		if !c.accepted() || c.HangupTries > 1 || !c.ended() {
			out = append(out, c)
		}
	}
	return out
}

// since is how long after from t came, or "not seen" for a zero t.
func since(from, t time.Time) string {
	if t.IsZero() {
		return "not seen"
	}
	if from.IsZero() {
		return "?"
	}
	return fmt.Sprintf("%.2f s", t.Sub(from).Seconds())
}

// cell makes text safe in a Markdown table cell.
func cell(s string) string {
	if s == "" {
		return "–"
	}
	return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s)
}

func (r report) ladderSection() string {
	w := section(r, "bot", r.ladder)
	w.f("The bot alone, with the calls of the bot vs plain pion table, N growing until a packet is lost or a call\n")
	w.f("is not recorded whole.\n\n")
	w.f("| Calls | Bot CPU (%% of a core) | CPU per participant-second | µs per packet | Memory per call | Packets sent | Lost or late | Frames not written | Calls whole | Callers' CPU (%% of a core) | Load before → after |\n")
	w.f("|---|---|---|---|---|---|---|---|---|---|---|\n")
	largest := 0
	for _, x := range r.ladder {
		w.f("| %d | %.0f%% | %.2f ms | %.1f | %s | %d | %d | %d | %d/%d | %.0f%% | %s |\n", x.Calls, 100*x.CPU.Seconds()/x.Seconds, ms(x.cpuPerParticipant()),
			x.usPerPacket(), kib(x.memPerCall()), x.Sent, x.Lost, x.Dropped, x.Files.Whole, x.Calls, 100*x.SenderCPU.Seconds()/x.Seconds, x.Load)
		if x.lossless() {
			largest = x.Calls
		}
	}
	w.f("\nLargest N recorded whole without a lost packet here: **%d**", largest)
	if n := len(r.ladder); n > 0 && r.ladder[n-1].lossless() && r.ladderErr == "" {
		w.f(" (the largest tried; try larger with `-bot-participants`)")
	}
	w.f(".\n")
	if r.ladderErr != "" {
		w.f("\nThe run stopped: %s\n", r.ladderErr)
	}
	w.f("\nThe callers run on the same cores as the bot, so the largest N is a lower bound for a bot with the\n")
	w.f("machine to itself.\n\n")
	return w.String()
}

// machine describes the host: CPU model, cores, memory, OS, Go and GStreamer versions.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				var kb int64
				fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "MemTotal:")), "%d", &kb)
				mem = fmt.Sprintf(", %.0f GiB RAM", float64(kb)/(1<<20))
			}
		}
	}
	gst := "GStreamer not found"
	if out, err := exec.Command("gst-launch-1.0", "--version").Output(); err == nil {
		if l := strings.SplitN(string(out), "\n", 2)[0]; l != "" {
			gst = "GStreamer " + strings.TrimPrefix(l, "gst-launch-1.0 version ")
		}
	}
	return fmt.Sprintf("%s, %d cores (nproc)%s, %s/%s, %s, %s", model, runtime.NumCPU(), mem, runtime.GOOS, runtime.GOARCH, runtime.Version(), gst)
}
