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

	"github.com/matrix-recorder/matrix-recorder/internal/mediacheck"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
)

// Part 1: the recorder core against GStreamer on the same Opus RTP streams.

const (
	opusPT       = 111
	packetPeriod = 20 * time.Millisecond
)

// coreRow is one line of part 1's table.
type coreRow struct {
	Floor    bool // the core only reads its sockets (no recorder)
	Streams  int
	Seconds  float64
	Packets  uint64 // sent to each of the two recorders in the measured window
	Core     procResult
	GStream  procResult
	CoreRecv uint64        // packets the core received (all of the run)
	CoreLost uint64        // packets it counted lost or late
	Sent     uint64        // packets sent to each recorder in the whole run
	GstAudio time.Duration // audio in GStreamer's files
	CoreFile time.Duration // audio in the core's files
}

// procResult is what one process used during the measured window.
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

// runCore runs the core and GStreamer side by side on n streams for d.
// With floor, the core process only reads its sockets (no recorder): the cost of
// receiving the packets in Go at all, under the same load (GStreamer runs too).
func runCore(ctx context.Context, self string, n int, d time.Duration, work string, floor bool) (coreRow, error) {
	row := coreRow{Streams: n, Seconds: d.Seconds(), Floor: floor}
	frames, err := testmedia.OpusFrames(testmedia.Tone440)
	if err != nil {
		return row, err
	}
	dir := filepath.Join(work, fmt.Sprintf("core-%d-%v", n, floor))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return row, err
	}

	// The core, in its own process.
	sinkArgs := []string{"core-sink", "-dir", filepath.Join(dir, "core"), "-streams", strconv.Itoa(n)}
	if p := os.Getenv("MATRIX_RECORDER_BENCH_CPUPROFILE"); p != "" {
		sinkArgs = append(sinkArgs, "-cpuprofile", p)
	}
	if floor {
		sinkArgs = append(sinkArgs, "-discard")
	}
	sink := exec.CommandContext(ctx, self, sinkArgs...)
	if p := os.Getenv("MATRIX_RECORDER_BENCH_SINK_PROCS"); p != "" {
		sink.Env = append(os.Environ(), "GOMAXPROCS="+p)
	}
	sinkIn, err := sink.StdinPipe()
	if err != nil {
		return row, err
	}
	sinkOut, err := sink.StdoutPipe()
	if err != nil {
		return row, err
	}
	sink.Stderr = os.Stderr
	if err := sink.Start(); err != nil {
		return row, fmt.Errorf("start the core: %w", err)
	}
	defer func() { _ = sink.Process.Kill(); _ = sink.Wait() }()
	out := bufio.NewReader(sinkOut)
	line, err := out.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready ") {
		return row, fmt.Errorf("the core did not start: %q %v", line, err)
	}
	corePorts := strings.Split(strings.TrimSpace(strings.TrimPrefix(line, "ready ")), ",")

	gst, err := startGStreamer(ctx, n, filepath.Join(dir, "gst"))
	if err != nil {
		return row, err
	}
	defer gst.kill()

	// One sender for both: every packet goes to the core and to GStreamer.
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return row, err
	}
	defer conn.Close()
	var coreAddrs, gstAddrs []*net.UDPAddr
	for i := range n {
		p, _ := strconv.Atoi(corePorts[i])
		coreAddrs = append(coreAddrs, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p})
		gstAddrs = append(gstAddrs, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: gst.ports[i]})
	}
	sample := func() (core, gs procSample, err error) {
		if core, err = sampleProc(sink.Process.Pid); err != nil {
			return core, gs, err
		}
		gs, err = sampleProc(gst.cmd.Process.Pid)
		return core, gs, err
	}
	c0, g0, err := sample()
	if err != nil {
		return row, err
	}
	row.Core.RSSStart, row.GStream.RSSStart = c0.rss, g0.rss

	warmup := 2 * time.Second
	var c1, g1 procSample
	var sampleErr error
	started := false
	row.Sent = sendOpus(ctx, conn, coreAddrs, gstAddrs, frames, warmup+d+500*time.Millisecond, func(elapsed time.Duration, sentSoFar uint64) {
		switch {
		case !started && elapsed >= warmup:
			started = true
			c0, g0, sampleErr = sample()
			row.Packets = sentSoFar
		case c1.at.IsZero() && elapsed >= warmup+d:
			c1, g1, sampleErr = sample()
			row.Packets = sentSoFar - row.Packets
		}
	})
	if sampleErr != nil {
		return row, sampleErr
	}
	row.Core.CPU, row.Core.RSS = c1.cpu-c0.cpu, c1.rss
	row.GStream.CPU, row.GStream.RSS = g1.cpu-g0.cpu, g1.rss
	time.Sleep(300 * time.Millisecond)

	// Stop both; they finalise their files.
	_ = sinkIn.Close()
	var res sinkResult
	if err := json.NewDecoder(out).Decode(&res); err != nil {
		return row, fmt.Errorf("the core's result: %w", err)
	}
	row.CoreRecv, row.CoreLost = res.Received, res.Lost+res.Late
	row.CoreFile = time.Duration(res.Frames) * packetPeriod
	if row.GstAudio, err = gst.stop(ctx); err != nil {
		return row, err
	}
	return row, nil
}

// gstProcess is the GStreamer pipeline of part 1.
type gstProcess struct {
	cmd   *exec.Cmd
	done  chan error
	ports []int
	dir   string
}

// startGStreamer runs one gst-launch-1.0 with a branch per stream. oggmux needs the Opus
// headers that opusparse makes from the packets: without it GStreamer 1.22 writes a
// 31-byte file and drops every packet, which would flatter its CPU time.
func startGStreamer(ctx context.Context, n int, dir string) (*gstProcess, error) {
	if err := exec.CommandContext(ctx, "gst-inspect-1.0", "opusparse").Run(); err != nil {
		return nil, errors.New("GStreamer's opusparse is missing: apt-get install gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ports, err := freeUDPPorts(n)
	if err != nil {
		return nil, err
	}
	args := []string{"-e", "-q"}
	for i, p := range ports {
		args = append(args, "udpsrc", "address=127.0.0.1", "port="+strconv.Itoa(p),
			"caps=application/x-rtp,media=(string)audio,clock-rate=(int)48000,encoding-name=(string)OPUS,payload=(int)"+strconv.Itoa(opusPT),
			"!", "rtpjitterbuffer", "latency=100", "!", "rtpopusdepay", "!", "opusparse", "!", "oggmux", "!",
			"filesink", "location="+filepath.Join(dir, fmt.Sprintf("stream%03d.ogg", i)))
	}
	g := &gstProcess{cmd: exec.CommandContext(ctx, "gst-launch-1.0", args...), done: make(chan error, 1), ports: ports, dir: dir}
	g.cmd.Stdout, g.cmd.Stderr = os.Stderr, os.Stderr
	if err := g.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start gst-launch-1.0: %w", err)
	}
	go func() { g.done <- g.cmd.Wait() }()
	select {
	case <-time.After(2 * time.Second): // to PLAYING
		return g, nil
	case err := <-g.done:
		return nil, fmt.Errorf("gst-launch-1.0 stopped: %v", err)
	}
}

// stop ends the pipeline with EOS (its files are finalised) and returns how much audio
// its files hold.
func (g *gstProcess) stop(ctx context.Context) (time.Duration, error) {
	_ = g.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-g.done:
	case <-time.After(30 * time.Second):
		return 0, errors.New("gst-launch-1.0 did not stop")
	}
	var audio time.Duration
	files, _ := filepath.Glob(filepath.Join(g.dir, "*.ogg"))
	for _, f := range files {
		out, err := exec.CommandContext(ctx, mediacheck.FFprobe, "-v", "error", "-select_streams", "a", "-count_packets",
			"-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", f).Output()
		if err != nil {
			continue
		}
		if packets, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil {
			audio += time.Duration(packets) * packetPeriod
		}
	}
	return audio, nil
}

func (g *gstProcess) kill() {
	if g.cmd.ProcessState == nil {
		_ = g.cmd.Process.Kill()
		<-g.done
	}
}

// sendOpus sends Opus frames as RTP, one packet per 20 ms per stream, to both address
// lists until d has passed, and returns how many packets went to each list. tick is
// called after each round with the time since the start and the packets sent so far.
func sendOpus(ctx context.Context, conn *net.UDPConn, a, b []*net.UDPAddr, frames []testmedia.Frame, d time.Duration, tick func(time.Duration, uint64)) uint64 {
	type stream struct {
		seq uint16
		ts  uint32
	}
	streams := make([]stream, len(a))
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
			n := 12 + copy(buf[12:], f.Data)
			_, _ = conn.WriteToUDP(buf[:n], a[i])
			_, _ = conn.WriteToUDP(buf[:n], b[i])
			s.seq++
			s.ts += uint32(f.Duration * 48000 / time.Second)
		}
		sent += uint64(len(streams))
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
