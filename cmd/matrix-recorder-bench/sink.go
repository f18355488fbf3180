package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// The recorder core as its own process, so that its CPU time and memory can be measured
// apart from the sender: N Opus tracks, each read from its own UDP socket on 127.0.0.1,
// recorded into one session exactly as the bot records a call. It prints "ready" and its
// ports, records until stdin closes, then prints a sinkResult as JSON.

type sinkResult struct {
	Frames   uint64 `json:"frames"`
	Received uint64 `json:"received"`
	Lost     uint64 `json:"lost"`
	Late     uint64 `json:"late"`
	Files    int    `json:"files"`
}

// udpSource reads one RTP stream from a UDP socket.
type udpSource struct{ c *net.UDPConn }

func (s udpSource) ReadPacket(b []byte) (int, error)  { return s.c.Read(b) }
func (s udpSource) SetReadDeadline(t time.Time) error { return s.c.SetReadDeadline(t) }

func runSink(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("core-sink", flag.ContinueOnError)
	dir := fs.String("dir", "", "recordings dir")
	n := fs.Int("streams", 1, "number of streams")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the recording to this file")
	discard := fs.Bool("discard", false, "only read the sockets (the floor: Go's UDP reads without the recorder)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			return err
		}
		runtime.SetCPUProfileRate(1000)
		if err := pprof.StartCPUProfile(f); err != nil {
			return errors.Join(err, f.Close())
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	ctx := context.Background()
	rec, err := recorder.New(recorder.Options{Dir: *dir, MaxTracks: 4**n + 16, Version: "bench"}, zerolog.Nop())
	if err != nil {
		return err
	}
	sess, err := rec.Start(ctx, recorder.CallInfo{CallID: "core", RoomID: "!bench:bench", Kind: "bench"})
	if err != nil {
		return err
	}
	// One socket per stream, a goroutine blocked in Read on each (as udpsrc has a
	// thread per socket).
	var (
		sources []recorder.PacketSource
		ports   []string
		closers []func() error
		wg      sync.WaitGroup
	)
	for range *n {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		closers = append(closers, c.Close)
		ports = append(ports, strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port))
		sources = append(sources, udpSource{c})
	}
	for i, src := range sources {
		if *discard {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b := make([]byte, 1600)
				for {
					if _, err := src.ReadPacket(b); err != nil && !isTimeout(err) {
						return
					}
				}
			}()
			continue
		}
		tr, err := sess.AddTrack(recorder.TrackInfo{
			UserID: fmt.Sprintf("@stream%03d:bench", i), DeviceID: "BENCH", MimeType: "audio/opus",
			ClockRate: 48000, Channels: 2, PayloadType: opusPT, SSRC: uint32(i + 1), ClockDomain: strconv.Itoa(i),
		})
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = tr.Run(ctx, recorder.Packets(src))
		}()
	}
	fmt.Fprintf(stdout, "ready %s\n", strings.Join(ports, ","))
	_, _ = io.Copy(io.Discard, bufio.NewReader(stdin))
	for _, c := range closers {
		_ = c()
	}
	wg.Wait()
	m, err := sess.Close(ctx)
	if err != nil {
		return err
	}
	var r sinkResult
	for _, e := range m.Tracks {
		r.Frames += e.Stats.Frames
		r.Received += e.Stats.PacketsReceived
		r.Lost += e.Stats.PacketsLost
		r.Late += e.Stats.PacketsLate
		r.Files++
	}
	return json.NewEncoder(stdout).Encode(r)
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}
