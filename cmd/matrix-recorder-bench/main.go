// Command matrix-recorder-bench measures the recorder and writes BENCHMARKS.md:
//
//	hotpath  go test -bench of the track pipeline (ns and allocations per packet)
//	core     the recorder core fed plain Opus RTP over UDP on loopback (N streams, real
//	         time), side by side with GStreamer on the same streams (one process with a branch per stream, and a process per stream)
//	         (udpsrc ! rtpjitterbuffer ! rtpopusdepay ! opusparse ! oggmux ! filesink)
//	side     the whole bot (real binary, real Dendrite) against a plain pion recorder
//	         (plainrecorder/), the same N 1:1 calls from pion PeerConnections sending Opus
//	         and 1 Mbit/s VP8, one after the other in one run
//	livekit  N Element Call participants publishing on livekit-server, the bot
//	         subscribed to all through the MatrixRTC call
//	soak     20 calls for an hour: the bot's memory and goroutines must stay flat
//	bot      the whole bot alone, N growing until a packet is lost
//	fleet    N instances on PostgreSQL and S3 (issue 17): K LiveKit calls spread over them,
//	         then a call handed over by SIGTERM and by kill -9 of its instance
//
// -profile DIR writes CPU profiles of the bot (its http.pprof switch) for every bot window.
//
// Run it by hand from the repository root, inside a private network namespace so that
// Dendrite's lookups stay on the machine (see BENCHMARKS.md for the exact command):
//
//	unshare -n sh -c 'ip link set lo up; go run -tags goolm ./cmd/matrix-recorder-bench'
//
// It needs ffmpeg, gst-launch-1.0 with the good and bad plugins (opusparse), and the
// Dendrite and livekit-server builds that the integration tests use (built and cached on
// first use).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "core-sink" {
		if err := runSink(os.Args[2:], os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "core-sink:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "matrix-recorder-bench:", err)
		os.Exit(1)
	}
}

type options struct {
	parts        map[string]bool
	coreStreams  []int
	coreDuration time.Duration
	sideCalls    []int
	sideRounds   int
	sideWindow   time.Duration
	sideOnly     string
	lkPublishers []int
	lkWindow     time.Duration
	soakCalls    int
	soakDuration time.Duration
	soakInterval time.Duration
	botN         []int
	fleetN       []int
	fleetCalls   int
	fleetPubs    int
	fleetWindow  time.Duration
	botWindow    time.Duration
	profile      string
	botUDPPort   uint16
	out          string
	keep         bool
	args         []string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("matrix-recorder-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	parts := fs.String("parts", "hotpath,core,side,livekit", "parts to run: hotpath, core, side, livekit, soak, bot, fleet")
	coreStreams := fs.String("core-streams", "50,200", "core: numbers of Opus streams, one run each")
	coreDuration := fs.Duration("core-duration", 20*time.Second, "core: measured time per run")
	sideCalls := fs.String("side-calls", "40,200", "side: numbers of simultaneous 1:1 calls, bot and plain pion recorder")
	sideRounds := fs.Int("side-rounds", 1, "side: rounds per size (odd rounds measure the plain recorder first)")
	sideWindow := fs.Duration("side-window", 20*time.Second, "side: measured time per step")
	sideOnly := fs.String("side-only", "", `side: measure only "bot" or "plain pion" (to look into one; the table then has no ratios)`)
	lkPublishers := fs.String("livekit-publishers", "10,25", "livekit: numbers of publishers (Opus + VP8 each)")
	lkWindow := fs.Duration("livekit-window", 20*time.Second, "livekit: measured time per step")
	soakCalls := fs.Int("soak-calls", 20, "soak: simultaneous 1:1 calls")
	soakDuration := fs.Duration("soak-duration", time.Hour, "soak: how long the calls last")
	soakInterval := fs.Duration("soak-interval", time.Minute, "soak: time between samples (the base is the sample one interval in)")
	botN := fs.String("bot-participants", "10,25,50,100,150,200", "bot: call counts, in order, until one loses packets")
	botWindow := fs.Duration("bot-window", 20*time.Second, "bot: measured time per step")
	fleetN := fs.String("fleet-instances", "1,2,3", "fleet: numbers of instances, one run each")
	fleetCalls := fs.Int("fleet-calls", 4, "fleet: LiveKit calls (rooms) per run")
	fleetPubs := fs.Int("fleet-publishers", 3, "fleet: publishers (Opus + VP8 each) per call")
	fleetWindow := fs.Duration("fleet-window", 20*time.Second, "fleet: measured time per run")
	profile := fs.String("profile", "", "write CPU profiles of the bot (through http.pprof) for every bot window into this folder")
	botUDPPort := fs.Uint("bot-udp-port", 0, "side, bot, soak: run the bot with webrtc.udp_port set to this port (one UDP socket for every peer connection); 0: a port per connection")
	out := fs.String("out", "BENCHMARKS.md", "the report to update (the sections of the parts run)")
	keep := fs.Bool("keep", false, "keep the recordings and logs (the work folder is printed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *botUDPPort > 65535 {
		return errors.New("-bot-udp-port: not a port")
	}
	o := options{parts: map[string]bool{}, botUDPPort: uint16(*botUDPPort), coreDuration: *coreDuration, sideRounds: *sideRounds, sideWindow: *sideWindow, sideOnly: *sideOnly,
		lkWindow: *lkWindow, soakCalls: *soakCalls, soakDuration: *soakDuration, soakInterval: *soakInterval,
		botWindow: *botWindow, fleetCalls: *fleetCalls, fleetPubs: *fleetPubs, fleetWindow: *fleetWindow, profile: *profile, out: *out, keep: *keep, args: args}
	for _, p := range strings.Split(*parts, ",") {
		switch p = strings.TrimSpace(p); p {
		case "hotpath", "core", "side", "livekit", "soak", "bot", "fleet":
			o.parts[p] = true
		default:
			return fmt.Errorf("-parts: unknown part %q", p)
		}
	}
	var err error
	for _, l := range []struct {
		flag string
		in   string
		out  *[]int
	}{{"-core-streams", *coreStreams, &o.coreStreams}, {"-side-calls", *sideCalls, &o.sideCalls},
		{"-livekit-publishers", *lkPublishers, &o.lkPublishers}, {"-bot-participants", *botN, &o.botN}, {"-fleet-instances", *fleetN, &o.fleetN}} {
		if *l.out, err = ints(l.in); err != nil {
			return fmt.Errorf("%s: %w", l.flag, err)
		}
	}
	if o.sideRounds < 1 || o.soakCalls < 1 || o.soakInterval <= 0 || o.fleetCalls < 1 || o.fleetPubs < 1 || o.fleetWindow <= 0 {
		return errors.New("-side-rounds, -soak-calls, -soak-interval, -fleet-calls, -fleet-publishers and -fleet-window must be positive")
	}
	if o.profile != "" {
		if o.profile, err = filepath.Abs(o.profile); err != nil {
			return err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "matrix-recorder-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintln(stderr, "work folder:", work)
	} else {
		defer os.RemoveAll(work)
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
	}
	var prof *profiler
	if o.profile != "" {
		prof = &profiler{dir: o.profile}
	}

	r := report{opts: o, started: time.Now(), partLoad: map[string]float64{}}
	var failed []error
	if o.parts["hotpath"] {
		r.partLoad["hotpath"] = loadAvg()
		logf("hot path: %s", hotBenchArgs)
		if r.hot, err = runHotPath(ctx); err != nil {
			return err
		}
	}
	if o.parts["core"] {
		r.partLoad["core"] = loadAvg()
		for _, n := range o.coreStreams {
			logf("core, reads alone and GStreamer both ways: %d streams for %v", n, o.coreDuration)
			row, err := runCore(ctx, self, n, o.coreDuration, work, logf)
			if err != nil {
				return fmt.Errorf("core, %d streams: %w", n, err)
			}
			r.core = append(r.core, row)
		}
	}
	var bins binaries
	if o.parts["side"] || o.parts["bot"] || o.parts["soak"] || o.parts["livekit"] || o.parts["fleet"] {
		if bins, err = buildBinaries(ctx, filepath.Join(work, "bin"), logf); err != nil {
			return err
		}
	}
	if o.parts["side"] || o.parts["bot"] || o.parts["soak"] {
		r.partLoad["side"] = loadAvg()
		cb, err := startCallBench(ctx, filepath.Join(work, "calls"), bins, prof != nil, o.botUDPPort, logf)
		if err != nil {
			return err
		}
		if o.parts["side"] {
			r.side, err = runSide(ctx, cb, o.sideCalls, o.sideRounds, o.sideWindow, o.sideOnly, prof)
			if err != nil {
				r.sideErr = err.Error()
				logf("side: %v", err)
				failed = append(failed, err)
			}
		}
		if o.parts["bot"] && ctx.Err() == nil {
			r.partLoad["bot"] = loadAvg()
			r.ladder, r.ladderErr = runLadder(ctx, cb, o.botN, o.botWindow, logf)
		}
		if o.parts["soak"] && ctx.Err() == nil {
			r.partLoad["soak"] = loadAvg()
			logf("soak: %d calls for %v, a sample every %v", o.soakCalls, o.soakDuration, o.soakInterval)
			res, err := runSoak(ctx, cb, o.soakCalls, o.soakDuration, o.soakInterval, prof, logf)
			if err != nil {
				r.soakErr = err.Error()
				failed = append(failed, fmt.Errorf("soak: %w", err))
			} else {
				r.soak = &res
				if len(res.Failed) > 0 {
					failed = append(failed, fmt.Errorf("soak failed: %s", strings.Join(res.Failed, "; ")))
				}
			}
		}
		if err := cb.close(); err != nil {
			logf("stopping the call bench: %v", err)
		}
	}
	if o.parts["livekit"] && len(o.lkPublishers) > 0 && ctx.Err() == nil {
		maxN := 0
		for _, n := range o.lkPublishers {
			maxN = max(maxN, n)
		}
		r.partLoad["livekit"] = loadAvg()
		lb, err := startLKBench(ctx, filepath.Join(work, "livekit"), bins, maxN, prof != nil, logf)
		if err != nil {
			return err
		}
		for _, n := range o.lkPublishers {
			row, err := lb.step(ctx, n, o.lkWindow, prof)
			if err != nil {
				r.lkErr = fmt.Sprintf("%d publishers: %v", n, err)
				logf("livekit: %s", r.lkErr)
				failed = append(failed, errors.New(r.lkErr))
				break
			}
			r.livekit = append(r.livekit, row)
		}
		if err := lb.close(); err != nil {
			logf("stopping the LiveKit bench: %v", err)
		}
	}
	if o.parts["fleet"] && len(o.fleetN) > 0 && ctx.Err() == nil {
		r.partLoad["fleet"] = loadAvg()
		fb, err := startFleetBench(ctx, filepath.Join(work, "fleet"), bins, logf)
		if err != nil {
			r.fleetErr = err.Error()
			failed = append(failed, fmt.Errorf("fleet: %w", err))
		} else {
			for _, n := range o.fleetN {
				row, err := fb.step(ctx, n, o.fleetCalls, o.fleetPubs, o.fleetWindow, logf)
				if err != nil {
					r.fleetErr = fmt.Sprintf("%d instances: %v", n, err)
					logf("fleet: %s", r.fleetErr)
					failed = append(failed, errors.New(r.fleetErr))
					break
				}
				r.fleet = append(r.fleet, row)
			}
			if err := fb.close(); err != nil {
				logf("stopping the fleet bench: %v", err)
			}
		}
	}
	r.profiles = summarizeProfiles(ctx, r, logf)

	old := map[string]string{}
	if o.out != "" {
		if b, err := os.ReadFile(o.out); err == nil {
			old = sections(string(b))
		}
	}
	text := r.markdown(old)
	fmt.Fprint(stdout, text)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(text), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", o.out, err)
		}
		logf("wrote %s", o.out)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.Join(failed...)
}

// summarizeProfiles reads the top functions of the profiles taken: the bot and the plain
// recorder at the first size of the side part (first round), the bot at the largest, the
// bot on the LiveKit path, and what the bot's and the plain recorder's memory held at the
// end of the first window.
func summarizeProfiles(ctx context.Context, r report, logf logFunc) []profileSummary {
	type src struct {
		name  string
		files []string
		heap  bool
	}
	var srcs []src
	if n := len(r.side); n > 0 {
		first, last := r.side[0], r.side[n-1]
		srcs = append(srcs, src{name: fmt.Sprintf("CPU: the bot, %d 1:1 calls", first.Calls), files: first.Bot.Profile},
			src{name: fmt.Sprintf("CPU: the plain pion recorder, %d 1:1 calls (for comparison)", first.Calls), files: first.Plain.Profile})
		if last.Calls != first.Calls {
			srcs = append(srcs, src{name: fmt.Sprintf("CPU: the bot, %d 1:1 calls", last.Calls), files: last.Bot.Profile})
		}
		for _, x := range []stepRow{first.Bot, first.Plain} {
			if x.Heap != "" {
				srcs = append(srcs, src{name: fmt.Sprintf("Memory: the %s's live heap at the end of the window, %d 1:1 calls", x.Target, x.Calls), files: []string{x.Heap}, heap: true})
			}
		}
	}
	if n := len(r.livekit); n > 0 {
		srcs = append(srcs, src{name: fmt.Sprintf("CPU: the bot on the LiveKit path, %d publishers", r.livekit[n-1].Publishers), files: r.livekit[n-1].Profile})
	}
	var out []profileSummary
	for _, s := range srcs {
		if len(s.files) == 0 {
			continue
		}
		p := profileSummary{Name: s.name, Heap: s.heap}
		for _, f := range s.files {
			p.Files = append(p.Files, "`"+filepath.Base(f)+"`")
		}
		var extra []string
		if s.heap {
			extra = []string{"-sample_index=inuse_space"}
		}
		var err error
		if p.Flat, p.Duration, err = topFunctions(ctx, s.files, false, 10, extra...); err != nil {
			logf("profile %s: %v", s.name, err)
			continue
		}
		if p.Cum, _, err = topFunctions(ctx, s.files, true, 10, extra...); err != nil {
			logf("profile %s: %v", s.name, err)
			continue
		}
		out = append(out, p)
	}
	return out
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, errors.New("want positive numbers separated by commas")
		}
		out = append(out, n)
	}
	return out, nil
}
