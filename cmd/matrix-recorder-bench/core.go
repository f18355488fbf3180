package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
)

// Part 1: the recorder core against GStreamer on the same Opus RTP streams, in two windows
// of the same length. First three receivers side by side, every packet sent to each: the
// core (recording), the core reading its sockets and discarding (the floor: Go's UDP reads
// alone), and one gst-launch-1.0 with a branch per stream. Then one gst-launch-1.0 per
// stream, alone: N processes against one would take most of the cores from it (the kernel
// shares CPU time by thread), so they do not share a window with the core.

const (
	opusPT       = 111
	packetPeriod = 20 * time.Millisecond
)

// coreRow is one line of part 1's table.
type coreRow struct {
	Streams int
	Seconds float64
	Packets uint64 // sent to each receiver in the first window
	Sent    uint64 // sent to each receiver in the whole first run
	Core    procResult
	Floor   procResult
	Gst     procResult // one process, a branch per stream
	// GstEach is a process per stream (memory: PSS), in the second window.
	GstEach        procResult
	GstEachPackets uint64
	GstEachSent    uint64
	// Audio in each recorder's files.
	CoreAudio, GstAudio, GstEachAudio time.Duration
	CoreLost                          uint64 // packets the core counted lost or late
	Load, GstEachLoad                 loadSpan
}

// procResult is what one process (or a group of processes) used during the window.
type procResult struct {
	CPU      time.Duration
	RSS      int64
	RSSStart int64
}

func (p procResult) usPerPacket(packets uint64) float64 {
	if packets == 0 {
		return 0
	}
	return float64(p.CPU.Microseconds()) / float64(packets)
}

func (p procResult) perTrack(n int) float64 { return float64(p.RSS-p.RSSStart) / float64(n) }

// runCore runs both windows on n streams for d each.
func runCore(ctx context.Context, self string, n int, d time.Duration, work string, logf logFunc) (coreRow, error) {
	row := coreRow{Streams: n, Seconds: d.Seconds()}
	frames, err := testmedia.OpusFrames(testmedia.Tone440)
	if err != nil {
		return row, err
	}
	dir := filepath.Join(work, fmt.Sprintf("core-%d", n))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return row, err
	}
	if err := exec.CommandContext(ctx, "gst-inspect-1.0", "opusparse").Run(); err != nil {
		return row, errors.New("GStreamer's opusparse is missing: apt-get install gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad")
	}
	if err := coreWindow(ctx, self, n, d, dir, frames, &row, logf); err != nil {
		return row, err
	}
	if err := gstEachWindow(ctx, n, d, dir, frames, &row, logf); err != nil {
		return row, err
	}
	return row, nil
}

// coreWindow measures the core, its reads alone and GStreamer in one process.
func coreWindow(ctx context.Context, self string, n int, d time.Duration, dir string, frames []testmedia.Frame, row *coreRow, logf logFunc) error {
	core, err := startSink(ctx, self, n, filepath.Join(dir, "core"), false)
	if err != nil {
		return err
	}
	defer core.kill()
	floor, err := startSink(ctx, self, n, filepath.Join(dir, "floor"), true)
	if err != nil {
		return err
	}
	defer floor.kill()
	logf("starting GStreamer: one process with %d branches", n)
	gst, err := startGStreamer(ctx, n, filepath.Join(dir, "gst"), false)
	if err != nil {
		return err
	}
	defer gst.kill()

	type sample struct{ core, floor, gst procSample }
	take := func() (s sample, err error) {
		if s.core, err = sampleProc(core.pid()); err != nil {
			return s, err
		}
		if s.floor, err = sampleProc(floor.pid()); err != nil {
			return s, err
		}
		s.gst, err = sampleProc(gst.pids()[0])
		return s, err
	}
	idle, err := take()
	if err != nil {
		return err
	}
	row.Core.RSSStart, row.Floor.RSSStart, row.Gst.RSSStart = idle.core.rss, idle.floor.rss, idle.gst.rss
	var s0, s1 sample
	sent, packets, load, err := measureWindow(ctx, [][]int{core.ports, floor.ports, gst.ports}, frames, d,
		func() error { s0, err = take(); return err }, func() error { s1, err = take(); return err })
	if err != nil {
		return err
	}
	row.Sent, row.Packets, row.Load = sent, packets, load
	row.Core.CPU, row.Core.RSS = s1.core.cpu-s0.core.cpu, s1.core.rss
	row.Floor.CPU, row.Floor.RSS = s1.floor.cpu-s0.floor.cpu, s1.floor.rss
	row.Gst.CPU, row.Gst.RSS = s1.gst.cpu-s0.gst.cpu, s1.gst.rss

	// Stop them all; they finalise their files.
	res, err := core.stop()
	if err != nil {
		return err
	}
	row.CoreLost = res.Lost + res.Late
	row.CoreAudio = time.Duration(res.Frames) * packetPeriod
	if _, err := floor.stop(); err != nil {
		return err
	}
	row.GstAudio, err = gst.stop(ctx)
	return err
}

// gstEachWindow measures a gst-launch-1.0 per stream, alone.
func gstEachWindow(ctx context.Context, n int, d time.Duration, dir string, frames []testmedia.Frame, row *coreRow, logf logFunc) error {
	logf("starting GStreamer: %d processes", n)
	g, err := startGStreamer(ctx, n, filepath.Join(dir, "gst-each"), true)
	if err != nil {
		return err
	}
	defer g.kill()
	take := func() (procSample, error) {
		var s procSample
		for _, pid := range g.pids() {
			p, err := samplePSS(pid)
			if err != nil {
				return s, err
			}
			s.cpu += p.cpu
			s.rss += p.pss
		}
		return s, nil
	}
	idle, err := take()
	if err != nil {
		return err
	}
	row.GstEach.RSSStart = idle.rss
	var s0, s1 procSample
	sent, packets, load, err := measureWindow(ctx, [][]int{g.ports}, frames, d,
		func() error { s0, err = take(); return err }, func() error { s1, err = take(); return err })
	if err != nil {
		return err
	}
	row.GstEachSent, row.GstEachPackets, row.GstEachLoad = sent, packets, load
	row.GstEach.CPU, row.GstEach.RSS = s1.cpu-s0.cpu, s1.rss
	row.GstEachAudio, err = g.stop(ctx)
	return err
}

// measureWindow sends the streams to every port list for 2 s of warm-up, the window d and
// half a second more; begin and end sample the receivers at the window's edges.
func measureWindow(ctx context.Context, dests [][]int, frames []testmedia.Frame, d time.Duration, begin, end func() error) (sent, packets uint64, load loadSpan, err error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, 0, load, err
	}
	defer conn.Close()
	addrs := make([][]*net.UDPAddr, len(dests))
	for k, ports := range dests {
		for _, p := range ports {
			addrs[k] = append(addrs[k], &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p})
		}
	}
	warmup := 2 * time.Second
	started, ended := false, false
	var sampleErr error
	sent = sendOpus(ctx, conn, addrs, frames, warmup+d+500*time.Millisecond, func(elapsed time.Duration, sentSoFar uint64) {
		switch {
		case !started && elapsed >= warmup:
			started = true
			load.Before = loadAvg()
			sampleErr = errors.Join(sampleErr, begin())
			packets = sentSoFar
		case started && !ended && elapsed >= warmup+d:
			ended = true
			sampleErr = errors.Join(sampleErr, end())
			load.After = loadAvg()
			packets = sentSoFar - packets
		}
	})
	if sampleErr != nil {
		return sent, packets, load, sampleErr
	}
	if !ended {
		return sent, packets, load, errors.Join(errors.New("the window did not end"), ctx.Err())
	}
	time.Sleep(300 * time.Millisecond)
	return sent, packets, load, nil
}

// sinkProcess is the core (core-sink) in its own process.
type sinkProcess struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Reader
	ports []int
}

func startSink(ctx context.Context, self string, n int, dir string, discard bool) (*sinkProcess, error) {
	args := []string{"core-sink", "-dir", dir, "-streams", strconv.Itoa(n)}
	if p := os.Getenv("MATRIX_RECORDER_BENCH_CPUPROFILE"); p != "" && !discard {
		args = append(args, "-cpuprofile", p)
	}
	if discard {
		args = append(args, "-discard")
	}
	s := &sinkProcess{cmd: exec.CommandContext(ctx, self, args...)}
	if p := os.Getenv("MATRIX_RECORDER_BENCH_SINK_PROCS"); p != "" {
		s.cmd.Env = append(os.Environ(), "GOMAXPROCS="+p)
	}
	var err error
	if s.in, err = s.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	s.cmd.Stderr = os.Stderr
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the core: %w", err)
	}
	s.out = bufio.NewReader(out)
	line, err := s.out.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready ") {
		s.kill()
		return nil, fmt.Errorf("the core did not start: %q %v", line, err)
	}
	for _, p := range strings.Split(strings.TrimSpace(strings.TrimPrefix(line, "ready ")), ",") {
		port, _ := strconv.Atoi(p)
		s.ports = append(s.ports, port)
	}
	return s, nil
}

func (s *sinkProcess) pid() int { return s.cmd.Process.Pid }

// stop closes its stdin (it finalises its files) and reads its result.
func (s *sinkProcess) stop() (sinkResult, error) {
	_ = s.in.Close()
	var res sinkResult
	if err := json.NewDecoder(s.out).Decode(&res); err != nil {
		return res, fmt.Errorf("the core's result: %w", err)
	}
	return res, nil
}

func (s *sinkProcess) kill() {
	if s.cmd.ProcessState == nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}

// gstGroup is GStreamer's side of part 1: one gst-launch-1.0 with a branch per stream, or
// one gst-launch-1.0 per stream.
type gstGroup struct {
	cmds  []*exec.Cmd
	done  []chan error
	ports []int
	dir   string
}

// gstBranch is one stream's pipeline. oggmux needs the Opus headers that opusparse makes
// from the packets: without it GStreamer 1.22 writes a 31-byte file and drops every packet,
// which would flatter its CPU time.
func gstBranch(port int, file string) []string {
	return []string{"udpsrc", "address=127.0.0.1", "port=" + strconv.Itoa(port),
		"caps=application/x-rtp,media=(string)audio,clock-rate=(int)48000,encoding-name=(string)OPUS,payload=(int)" + strconv.Itoa(opusPT),
		"!", "rtpjitterbuffer", "latency=100", "!", "rtpopusdepay", "!", "opusparse", "!", "oggmux", "!",
		"filesink", "location=" + file}
}

func startGStreamer(ctx context.Context, n int, dir string, perStream bool) (*gstGroup, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ports, err := freeUDPPorts(n)
	if err != nil {
		return nil, err
	}
	g := &gstGroup{ports: ports, dir: dir}
	var argv [][]string
	if perStream {
		for i, p := range ports {
			argv = append(argv, append([]string{"-e", "-q"}, gstBranch(p, filepath.Join(dir, fmt.Sprintf("stream%03d.ogg", i)))...))
		}
	} else {
		args := []string{"-e", "-q"}
		for i, p := range ports {
			args = append(args, gstBranch(p, filepath.Join(dir, fmt.Sprintf("stream%03d.ogg", i)))...)
		}
		argv = append(argv, args)
	}
	for _, args := range argv {
		cmd := exec.CommandContext(ctx, "gst-launch-1.0", args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			g.kill()
			return nil, fmt.Errorf("start gst-launch-1.0: %w", err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		g.cmds = append(g.cmds, cmd)
		g.done = append(g.done, done)
	}
	// Ready when every udpsrc has bound its port (then its pipeline is PLAYING).
	err = poll(ctx, 2*time.Minute, 100*time.Millisecond, func() (bool, string) {
		bound := boundUDPPorts()
		ok := 0
		for _, p := range ports {
			if bound[p] {
				ok++
			}
		}
		return ok == len(ports), fmt.Sprintf("gst-launch-1.0: %d of %d ports bound", ok, len(ports))
	})
	if err != nil {
		g.kill()
		return nil, err
	}
	time.Sleep(500 * time.Millisecond)
	for i, d := range g.done {
		select {
		case err := <-d:
			g.done[i] <- err
			g.kill()
			return nil, fmt.Errorf("gst-launch-1.0 stopped: %v", err)
		default:
		}
	}
	return g, nil
}

func (g *gstGroup) pids() []int {
	var out []int
	for _, c := range g.cmds {
		out = append(out, c.Process.Pid)
	}
	return out
}

// stop ends every pipeline with EOS (its files are finalised) and returns how much audio
// the files hold.
func (g *gstGroup) stop(ctx context.Context) (time.Duration, error) {
	for _, c := range g.cmds {
		_ = c.Process.Signal(syscall.SIGINT)
	}
	for _, d := range g.done {
		select {
		case err := <-d:
			d <- err
		case <-time.After(60 * time.Second):
			return 0, errors.New("gst-launch-1.0 did not stop")
		}
	}
	var audio time.Duration
	files, _ := filepath.Glob(filepath.Join(g.dir, "*.ogg"))
	for _, f := range files {
		if d, err := mediaDuration(ctx, f, "audio"); err == nil {
			audio += d
		}
	}
	return audio, nil
}

func (g *gstGroup) kill() {
	for i, c := range g.cmds {
		select {
		case err := <-g.done[i]:
			g.done[i] <- err
		default:
			_ = c.Process.Kill()
			g.done[i] <- <-g.done[i]
		}
	}
}

// boundUDPPorts lists the local ports of the UDP sockets in this network namespace.
func boundUDPPorts() map[int]bool {
	out := map[int]bool{}
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return out
	}
	for _, l := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		if _, port, ok := strings.Cut(f[1], ":"); ok {
			if p, err := strconv.ParseUint(port, 16, 16); err == nil {
				out[int(p)] = true
			}
		}
	}
	return out
}

// sendOpus sends Opus frames as RTP, one packet per 20 ms per stream, to every address list
// until d has passed, and returns how many packets went to each list. tick is called after
// each round with the time since the start and the packets sent so far.
func sendOpus(ctx context.Context, conn *net.UDPConn, dests [][]*net.UDPAddr, frames []testmedia.Frame, d time.Duration, tick func(time.Duration, uint64)) uint64 {
	type stream struct {
		seq uint16
		ts  uint32
	}
	n := len(dests[0])
	streams := make([]stream, n)
	for i := range streams {
		streams[i] = stream{seq: uint16(i * 1000), ts: uint32(i) * 7919}
	}
	buf := make([]byte, 1500)
	start := time.Now()
	var sent uint64
	for k := 0; ; k++ {
		next := start.Add(time.Duration(k) * packetPeriod)
		if next.Sub(start) >= d || ctx.Err() != nil {
			return sent
		}
		time.Sleep(time.Until(next))
		f := frames[k%len(frames)]
		for i := range streams {
			s := &streams[i]
			buf[0], buf[1] = 0x80, opusPT
			binary.BigEndian.PutUint16(buf[2:], s.seq)
			binary.BigEndian.PutUint32(buf[4:], s.ts)
			binary.BigEndian.PutUint32(buf[8:], uint32(i+1))
			size := 12 + copy(buf[12:], f.Data)
			for _, list := range dests {
				_, _ = conn.WriteToUDP(buf[:size], list[i])
			}
			s.seq++
			s.ts += uint32(f.Duration * 48000 / time.Second)
		}
		sent += uint64(n)
		tick(time.Since(start), sent)
	}
}

// freeUDPPorts finds n ports that are free at the same time.
func freeUDPPorts(n int) ([]int, error) {
	var conns []io.Closer
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	var ports []int
	for range n {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return nil, err
		}
		conns = append(conns, c)
		ports = append(ports, c.LocalAddr().(*net.UDPAddr).Port)
	}
	return ports, nil
}
