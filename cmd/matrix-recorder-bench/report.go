package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// report collects every part's results and renders BENCHMARKS.md.
type report struct {
	opts    options
	started time.Time
	hot     []hotRow
	core    []coreRow
	floor   []coreRow
	bot     []botRow
	botErr  string
}

func (r report) markdown() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# Benchmarks\n\n")
	w("Measured %s on %s. Reproduce from the repository root (as root, for the private network namespace):\n\n",
		r.started.UTC().Format("2006-01-02"), machine())
	cmd := "go run -tags goolm ./cmd/matrix-recorder-bench"
	if len(r.opts.args) > 0 {
		cmd += " " + strings.Join(r.opts.args, " ")
	}
	w("```\nunshare -n sh -c 'ip link set lo up; %s'\n```\n\n", cmd)
	w("It needs ffmpeg and GStreamer (`apt-get install ffmpeg gstreamer1.0-tools gstreamer1.0-plugins-good\n")
	w("gstreamer1.0-plugins-bad`) and builds ")
	w("Dendrite on first use like the integration tests. CPU is user+system time from `/proc/<pid>/stat` over the\n")
	w("measured window only (not start-up or finalising), memory the resident set (`VmRSS`).\n\n")

	if len(r.hot) > 0 {
		w("## Hot path\n\n`%s`: packets through the whole track pipeline\n", hotBenchArgs)
		w("(reorder buffer, depacketizer, timeline, container writer, a flush every second and the manifest\n")
		w("refresh every 5 s of media, all in simulated time); one op is one packet.\n\n")
		w("| Benchmark | ns/packet | allocations/packet in steady state | B/op | allocs/op |\n|---|---|---|---|---|\n")
		for _, h := range r.hot {
			w("| %s | %s | %s | %s | %s |\n", h.Name, h.NsPerOp, h.SteadyAllocs, h.BytesPerOp, h.AllocsPerOp)
		}
		w("\nThe packet path itself allocates nothing (`TestPacketPathDoesNotAllocate` checks it); the few\n")
		w("allocations in steady state are the manifest refresh (JSON) every 5 s and Matroska's cluster index.\n")
		w("ns/packet includes that refresh's file system calls (an atomic rewrite of manifest.json).\n\n")
	}

	if len(r.core) > 0 {
		w("## Recorder core vs GStreamer\n\n")
		w("N Opus RTP streams (20 ms packets, real time) sent over UDP on loopback; every packet goes both to the\n")
		w("recorder core (its own process: one session, one track per stream, each reading its own socket, writing\n")
		w("Ogg Opus as the bot does) and to one `gst-launch-1.0` process with a branch per stream:\n")
		w("`udpsrc ! rtpjitterbuffer latency=100 ! rtpopusdepay ! opusparse ! oggmux ! filesink`. (`opusparse`, from\n")
		w("plugins-bad, makes the Opus headers `oggmux` needs: without it GStreamer 1.22 writes a 31-byte file and\n")
		w("drops every packet.)\n\n")
		w("| Streams | Packets each | Core CPU µs/packet | GStreamer CPU µs/packet | GStreamer / core | Go UDP reads alone µs/packet | Core memory (per track) | GStreamer memory (per track) | Audio recorded, core / GStreamer |\n")
		w("|---|---|---|---|---|---|---|---|---|\n")
		for i, c := range r.core {
			cu, gu := c.Core.usPerPacket(c.Packets), c.GStream.usPerPacket(c.Packets)
			ratio := "n/a"
			if cu > 0 {
				ratio = fmt.Sprintf("%.1fx", gu/cu)
			}
			floor := "n/a"
			if i < len(r.floor) {
				floor = fmt.Sprintf("%.1f", r.floor[i].Core.usPerPacket(r.floor[i].Packets))
			}
			sent := time.Duration(c.Sent) * packetPeriod
			w("| %d | %d | %.1f | %.1f | %s | %s | %s (%s) | %s (%s) | %.0f%% / %.0f%% |\n", c.Streams, c.Packets, cu, gu, ratio, floor,
				mib(c.Core.RSS), kib(float64(c.Core.RSS-c.Core.RSSStart)/float64(c.Streams)),
				mib(c.GStream.RSS), kib(float64(c.GStream.RSS-c.GStream.RSSStart)/float64(c.Streams)),
				100*c.CoreFile.Seconds()/sent.Seconds(), 100*c.GstAudio.Seconds()/sent.Seconds())
		}
		w("\n\"Go UDP reads alone\" is the same core process reading its sockets and discarding the packets, no\n")
		w("recorder (a separate run, GStreamer running alongside as before): what a goroutine blocked in `Read`\n")
		w("on each socket costs in Go (it is woken ")
		w("per packet and makes two read calls, the second one finding nothing). The recorder's own work is the\n")
		w("difference. Per-track memory is the growth of the resident set from the idle process (all tracks set\n")
		w("up, no packets yet) to the end of the window, divided by N. \"Audio recorded\" compares the audio in\n")
		w("each recorder's files with what was sent (start-up and hang-up included), so both are seen to keep up.\n\n")
		w("Why not 5x (as measured 2026-11-22): most of the core's CPU is the reads, a goroutine woken per packet on\n")
		w("this virtual machine. At 50 streams they alone cost more than a fifth of GStreamer's CPU; at 200 they leave\n")
		w("about 1.6 µs a packet for a recorder that needs about 4.5. One socket shared by every stream, read in batches (recvmmsg) by one goroutine that queues\n")
		w("each packet for its track, was tried: the reads alone fell to 11.2 µs a packet at 50 streams, but the whole\n")
		w("core rose to 22.4 µs, because the sender's packets arrive one by one (a batch holds about one packet) and\n")
		w("handing each to its track's goroutine adds a second wake-up.\n")
		w("\n")
	}

	if len(r.bot) > 0 || r.botErr != "" {
		w("## The whole bot\n\n")
		w("The real binary with a real Dendrite, recording N participants: N 1:1 calls (MSC2746, unencrypted)\n")
		w("from N pion PeerConnections in the bench process, each sending Opus and 1 Mbit/s VP8 (640x360, 30 fps)\n")
		w("over loopback with DTLS-SRTP, NACK and RTCP, every track written to disk. N grows until a packet is lost.\n\n")
		w("| Participants | Bot CPU (%% of a core) | CPU per participant | Bot µs/packet | Memory per track | Bot memory | Packets sent | Lost or late | Frames not written | Senders' CPU (%% of a core) |\n")
		w("|---|---|---|---|---|---|---|---|---|---|\n")
		for _, x := range r.bot {
			core := 100 * x.CPU.Seconds() / x.Seconds
			per := x.CPU / time.Duration(x.Participants) / time.Duration(x.Seconds)
			us := 0.0
			if x.Packets > 0 {
				us = float64(x.CPU.Microseconds()) / float64(x.Packets)
			}
			w("| %d | %.0f%% | %.1f ms/s | %.1f | %s | %s | %d | %d | %d | %.0f%% |\n", x.Participants, core, float64(per.Microseconds())/1000, us,
				kib(float64(x.RSS-x.RSSBase)/float64(2*x.Participants)), mib(x.RSS), x.Sent, x.Lost, x.Dropped, 100*x.SenderCPU.Seconds()/x.Seconds)
		}
		largest := 0
		for _, x := range r.bot {
			if x.lossless() {
				largest = x.Participants
			}
		}
		w("\nLargest N recorded without a lost packet here: **%d**", largest)
		if n := len(r.bot); n > 0 && r.bot[n-1].lossless() && r.botErr == "" {
			w(" (the largest tried; try larger with `-bot-participants`)")
		}
		w(".\n")
		if r.botErr != "" {
			w("\nThe run stopped: %s\n", r.botErr)
		}
		w("\nThe senders run on the same cores as the bot (their CPU is in the last column), so the largest N is a\n")
		w("lower bound for a bot with the machine to itself. Memory per track is the growth of the bot's resident\n")
		w("set from the idle bot (after start-up, before the first call) to the end of the step, divided by the 2N\n")
		w("tracks; \"Packets sent\" counts the whole calls, µs/packet only the window. \"Frames not written\" are\n")
		w("at the start of calls set up under load: the first keyframe did not reach the recorder whole (its\n")
		w("first packets came before the connection was ready), the recorder asked for a keyframe (PLI), which\n")
		w("these synthetic senders ignore, and started the file at the next one, a second later.\n")
	}
	return b.String()
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
			gst = strings.TrimPrefix(l, "gst-launch-1.0 version ")
			gst = "GStreamer " + gst
		}
	}
	return fmt.Sprintf("%s, %d cores%s, %s/%s, %s, %s", model, runtime.NumCPU(), mem, runtime.GOOS, runtime.GOARCH, runtime.Version(), gst)
}
