// Command matrix-recorder-bench measures the recorder and writes BENCHMARKS.md:
//
//	hotpath  go test -bench of the track pipeline (ns and allocations per packet)
//	core     the recorder core fed plain Opus RTP over UDP on loopback (N streams, real
//	         time), side by side with a GStreamer pipeline on the same streams
//	         (udpsrc ! rtpjitterbuffer ! rtpopusdepay ! opusparse ! oggmux ! filesink)
//	bot      the whole bot (real binary, real Dendrite) recording N participants, each
//	         a pion PeerConnection sending Opus and 1 Mbit/s VP8, N growing until a
//	         packet is lost
//
// Run it by hand from the repository root, inside a private network namespace so that
// Dendrite's lookups stay on the machine (see BENCHMARKS.md for the exact command):
//
//	unshare -n sh -c 'ip link set lo up; go run -tags goolm ./cmd/matrix-recorder-bench'
//
// It needs ffmpeg, gst-launch-1.0 with the good and bad plugins (opusparse), and the
// Dendrite build that the integration tests use (built and cached on first use).
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
	botN         []int
	botWindow    time.Duration
	out          string
	keep         bool
	args         []string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("matrix-recorder-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	parts := fs.String("parts", "hotpath,core,bot", "parts to run: hotpath, core, bot")
	coreStreams := fs.String("core-streams", "50,200", "core part: numbers of Opus streams, one run each")
	coreDuration := fs.Duration("core-duration", 20*time.Second, "core part: measured time per run")
	botN := fs.String("bot-participants", "10,25,50,100,150,200", "bot part: participant counts, in order, until one loses packets")
	botWindow := fs.Duration("bot-window", 20*time.Second, "bot part: measured time per step")
	out := fs.String("out", "BENCHMARKS.md", "the report to write")
	keep := fs.Bool("keep", false, "keep the recordings and logs (the work folder is printed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o := options{parts: map[string]bool{}, coreDuration: *coreDuration, botWindow: *botWindow, out: *out, keep: *keep, args: args}
	for _, p := range strings.Split(*parts, ",") {
		o.parts[strings.TrimSpace(p)] = true
	}
	var err error
	if o.coreStreams, err = ints(*coreStreams); err != nil {
		return fmt.Errorf("-core-streams: %w", err)
	}
	if o.botN, err = ints(*botN); err != nil {
		return fmt.Errorf("-bot-participants: %w", err)
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

	r := report{opts: o, started: time.Now()}
	if o.parts["hotpath"] {
		logf("hot path: %s", hotBenchArgs)
		if r.hot, err = runHotPath(ctx); err != nil {
			return err
		}
	}
	if o.parts["core"] {
		for _, n := range o.coreStreams {
			logf("core and GStreamer: %d streams for %v", n, o.coreDuration)
			row, err := runCore(ctx, self, n, o.coreDuration, work, false)
			if err != nil {
				return fmt.Errorf("core, %d streams: %w", n, err)
			}
			r.core = append(r.core, row)
			logf("the floor (Go's UDP reads alone): %d streams for %v", n, o.coreDuration)
			if row, err = runCore(ctx, self, n, o.coreDuration, work, true); err != nil {
				return fmt.Errorf("floor, %d streams: %w", n, err)
			}
			r.floor = append(r.floor, row)
		}
	}
	if o.parts["bot"] && len(o.botN) > 0 {
		maxN := 0
		for _, n := range o.botN {
			maxN = max(maxN, n)
		}
		b, err := startBotBench(ctx, filepath.Join(work, "bot"), maxN, o.keep, logf)
		if err != nil {
			return err
		}
		for _, n := range o.botN {
			row, err := b.step(ctx, n, o.botWindow)
			if err != nil {
				r.botErr = fmt.Sprintf("%d participants: %v", n, err)
				logf("%s", r.botErr)
				break
			}
			r.bot = append(r.bot, row)
			logf("%d participants: bot CPU %.0f%% of a core, %d packets lost", n, 100*row.CPU.Seconds()/row.Seconds, row.Lost)
			if !row.lossless() {
				break
			}
		}
		if err := b.close(); err != nil {
			logf("stopping the bot bench: %v", err)
		}
	}
	text := r.markdown()
	fmt.Fprint(stdout, text)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(text), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", o.out, err)
		}
		logf("wrote %s", o.out)
	}
	return ctx.Err()
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
