package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/internal/devpg"
	"github.com/matrix-recorder/matrix-recorder/internal/devs3"
	"github.com/matrix-recorder/matrix-recorder/internal/devtools"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// Part fleet: N instances of the real binary on one PostgreSQL database and one S3 store
// (issue 17) record K Element Call (LiveKit) calls of P publishers each. Per N: how the
// calls spread over the instances, the participants recorded whole, the CPU of all the
// instances together; then the hand-over: a clean stop (SIGTERM) of one call's owner and
// a kill -9 of another's, each measured in the manifest of the instance that continues.
//
// LiveKit calls and not legacy 1:1 calls: a legacy call's peer connection lives in the
// process that answered it, so it cannot move (the fleet ends it); a LiveKit (or full
// mesh) call is rejoined by the instance that takes the room over.

type fleetRow struct {
	Instances    int
	Rooms        int
	Participants int
	Seconds      float64
	CPU          time.Duration // every instance together, during the window
	RSS          int64         // every instance together, at the end of the window
	Spread       []int         // calls each instance took at the start
	Lost         uint64
	Files        fileCheck // the participants of the rooms not handed over
	Term, Kill   *handOver
	Load         loadSpan
	Notes        []string
}

func (r fleetRow) cpuPerParticipant() time.Duration {
	return time.Duration(float64(r.CPU) / float64(r.Participants) / r.Seconds)
}

// handOver is one call moved from its instance to another.
type handOver struct {
	From, To string
	// Resumed runs from the signal to the resume the manifest records (resumed_at);
	// Flowing to the moment the continuing instance's manifest lists every track again.
	Resumed, Flowing time.Duration
	// Gap is the manifest's resumed_at − interrupted_at; Missing the largest hole on
	// the call's timeline between a track's parts (the earlier part's end as the
	// manifest in S3 says it).
	Gap, Missing time.Duration
	Err          string
}

// fleetBench is the fleet's environment: the LiveKit part's (Dendrite, livekit-server,
// the JWT service, the media) plus PostgreSQL and the S3 server.
type fleetBench struct {
	lk  *lkBench
	pg  *devpg.Server
	s3  *devs3.Server
	bin string
}

const fleetBucket = "recordings"

func startFleetBench(ctx context.Context, work string, bins binaries, logf logFunc) (*fleetBench, error) {
	f := &fleetBench{bin: bins.bot}
	var err error
	// startLKBench registers a bot of its own that the fleet does not use: each N gets a
	// fresh account (a fresh database has no cross-signing keys of an older account).
	if f.lk, err = startLKBench(ctx, work, bins, 8, false, logf); err != nil {
		return nil, err
	}
	logf("starting PostgreSQL and the S3 server")
	if f.pg, err = devpg.Start(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("PostgreSQL: %w", err), f.close())
	}
	quiet := zerolog.Nop()
	if f.s3, err = devs3.Start(ctx, devs3.Options{Dir: filepath.Join(work, "s3"), Logger: &quiet}); err != nil {
		return nil, errors.Join(fmt.Errorf("S3 server: %w", err), f.close())
	}
	if err := f.s3.CreateBucket(ctx, fleetBucket); err != nil {
		return nil, errors.Join(err, f.close())
	}
	return f, nil
}

func (f *fleetBench) close() error {
	var errs []error
	if f.s3 != nil {
		errs = append(errs, f.s3.Stop())
	}
	if f.pg != nil {
		errs = append(errs, f.pg.Stop())
	}
	if f.lk != nil {
		errs = append(errs, f.lk.close())
	}
	return errors.Join(errs...)
}

// instances makes n bot processes of one fresh account on a fresh database: each its
// own instance.id, data_dir (device), recordings dir and HTTP port.
func (f *fleetBench) instances(ctx context.Context, n int) ([]*botProc, error) {
	uri, err := f.pg.CreateDatabase(ctx, fmt.Sprintf("fleet%d", n))
	if err != nil {
		return nil, err
	}
	account := fmt.Sprintf("fleet%d", n)
	first, err := newBotProc(ctx, f.bin, filepath.Join(f.lk.work, account, "rec-a"), f.lk.hs, account, false, func(c *config.Config) {
		c.LiveKit.TrustedJWTServices = []string{f.lk.jwt.URL()}
		c.Database = config.Database{Type: config.DatabasePostgres, URI: uri}
		c.Instance.ID = "rec-a"
		c.Storage.S3 = config.S3{
			Endpoint: f.s3.Endpoint(), Bucket: fleetBucket, Region: devs3.Region, Prefix: account,
			AccessKey: f.s3.AccessKey(), SecretKey: f.s3.SecretKey(), PathStyle: true,
			PartSize: 5 << 20, PresignExpiry: config.Duration(time.Hour),
		}
	})
	if err != nil {
		return nil, err
	}
	procs := []*botProc{first}
	for i := 1; i < n; i++ {
		inst := fmt.Sprintf("rec-%c", 'a'+i)
		port, err := devtools.FreePort()
		if err != nil {
			return nil, err
		}
		b := *first
		b.dir = filepath.Join(f.lk.work, account, inst)
		if err := os.MkdirAll(b.dir, 0o755); err != nil {
			return nil, err
		}
		b.cfg.Instance.ID = inst
		b.cfg.DataDir, b.cfg.Recordings.Dir = filepath.Join(b.dir, "data"), filepath.Join(b.dir, "recordings")
		b.cfg.HTTP.Listen = "127.0.0.1:" + strconv.Itoa(port)
		b.httpAddr, b.logPath = b.cfg.HTTP.Listen, filepath.Join(b.dir, "bot.log")
		procs = append(procs, &b)
	}
	return procs, nil
}

// fleetRoom is one call of the step: its publishers, its folder, who records it.
type fleetRoom struct {
	room    id.RoomID
	pubs    []*lkPublisher
	folder  string // the call folder's name (the same on every instance)
	movedAt time.Time
}

// owner is the instance whose copy of the room's folder says recording (-1 if none).
func ownerOf(procs []*botProc, folder string) int {
	for i, p := range procs {
		if p.cmd == nil {
			continue
		}
		m, err := recorder.ReadManifest(filepath.Join(p.recordings(), folder))
		if err == nil && m.Status == recorder.StatusRecording {
			return i
		}
	}
	return -1
}

func (f *fleetBench) step(ctx context.Context, n, rooms, perRoom int, window time.Duration, logf logFunc) (row fleetRow, err error) {
	row = fleetRow{Instances: n, Rooms: rooms, Participants: rooms * perRoom, Seconds: window.Seconds(), Spread: make([]int, n)}
	procs, err := f.instances(ctx, n)
	if err != nil {
		return row, err
	}
	defer func() {
		for _, p := range procs {
			if p.cmd != nil {
				if serr := p.stop(); serr != nil {
					logf("fleet: stopping %s: %v", p.cfg.Instance.ID, serr)
				}
			}
		}
	}()
	// One after the other, as the docs ask for a fresh account: the first bootstraps
	// cross-signing, the others find its keys in the database.
	for _, p := range procs {
		logf("fleet: starting %s", p.cfg.Instance.ID)
		if err := p.start(ctx); err != nil {
			return row, fmt.Errorf("%s: %w", p.cfg.Instance.ID, err)
		}
	}
	lb := *f.lk
	lb.bot = procs[0]
	calls := make([]*fleetRoom, rooms)
	defer func() {
		for _, c := range calls {
			if c == nil {
				continue
			}
			for _, p := range c.pubs {
				if p == nil {
					continue
				}
				p.stop()
				if p.peer != nil && !p.closed {
					_ = p.peer.Close()
				}
			}
		}
	}()
	seen := map[string]bool{}
	for k := range calls {
		c := &fleetRoom{pubs: make([]*lkPublisher, perRoom)}
		calls[k] = c
		f.lk.steps++
		for i := range c.pubs {
			p, err := lb.newPeer(ctx, fmt.Sprintf("f%d-%d-%d", n, k, i))
			if err != nil {
				return row, err
			}
			c.pubs[i] = &lkPublisher{peer: p}
		}
		owner := c.pubs[0].peer
		if c.room, err = lb.callRoom(ctx, owner, c.pubs[1:]); err != nil {
			return row, err
		}
		for i, p := range c.pubs {
			if err := lb.publish(ctx, p, c.room, i > 0); err != nil {
				return row, fmt.Errorf("room %d, participant %d: %w", k, i, err)
			}
		}
		since := time.Now()
		if err := sendText(ctx, owner, c.room, "!start"); err != nil {
			return row, err
		}
		if _, err := owner.WaitMessage(ctx, c.room, since, func(s string) bool { return strings.Contains(s, "Recording started") }); err != nil {
			return row, fmt.Errorf("room %d: the fleet did not start recording: %w (messages: %q)", k, err, owner.Messages(c.room))
		}
		// The new folder, on the instance that took the call, with every track.
		err = poll(ctx, 3*time.Minute, 200*time.Millisecond, func() (bool, string) {
			for i, p := range procs {
				dirs, _ := os.ReadDir(p.recordings())
				for _, d := range dirs {
					if seen[d.Name()] {
						continue
					}
					m, err := recorder.ReadManifest(filepath.Join(p.recordings(), d.Name()))
					if err != nil || m.Status != recorder.StatusRecording || m.RoomID != string(c.room) {
						continue
					}
					if len(m.Tracks) >= 2*perRoom {
						c.folder = d.Name()
						seen[d.Name()] = true
						row.Spread[i]++
						return true, ""
					}
				}
			}
			return false, fmt.Sprintf("room %d: not every track recording", k)
		})
		if err != nil {
			return row, err
		}
		logf("fleet: room %d recorded by %s", k, procs[ownerOf(procs, c.folder)].cfg.Instance.ID)
	}
	allRecording := time.Now()
	time.Sleep(3 * time.Second)

	// The window: every instance's CPU together.
	row.Load.Before = loadAvg()
	before := make([]procSample, n)
	for i, p := range procs {
		before[i] = mustSample(p.pid())
	}
	logf("fleet, %d instances: measuring %d participants in %d calls for %v (load %.1f)", n, row.Participants, rooms, window, row.Load.Before)
	select {
	case <-time.After(window):
	case <-ctx.Done():
		return row, ctx.Err()
	}
	for i, p := range procs {
		s := mustSample(p.pid())
		row.CPU += s.cpu - before[i].cpu
		row.RSS += s.rss
	}
	row.Load.After = loadAvg()

	// The hand-overs, with the calls going on.
	if n < 2 {
		row.Notes = append(row.Notes, "one instance: nothing to hand over to")
	} else {
		row.Term = f.handOver(ctx, procs, calls, perRoom, false, logf)
		// The stopped instance comes back, so that the kill has somewhere to go with
		// two instances too.
		for _, p := range procs {
			if p.cmd == nil {
				if err := p.start(ctx); err != nil {
					row.Notes = append(row.Notes, fmt.Sprintf("%s did not come back after the clean stop: %v", p.cfg.Instance.ID, err))
				}
			}
		}
		row.Kill = f.handOver(ctx, procs, calls, perRoom, true, logf)
	}

	// The end: !stop everywhere, then the files.
	stopAt := time.Now()
	for _, c := range calls {
		if err := sendText(ctx, c.pubs[0].peer, c.room, "!stop"); err != nil {
			return row, err
		}
	}
	var pcalls []*placedCall
	var results []callResult
	for k, c := range calls {
		var m *recorder.Manifest
		var folder string
		err := poll(ctx, 2*time.Minute, 100*time.Millisecond, func() (bool, string) {
			for _, p := range procs {
				x, err := recorder.ReadManifest(filepath.Join(p.recordings(), c.folder))
				if err == nil && (x.Status == recorder.StatusFinished || x.Status == recorder.StatusComplete) && len(x.Resumes) >= resumesOf(calls, c) {
					m, folder = x, filepath.Join(p.recordings(), c.folder)
					return true, ""
				}
			}
			return false, fmt.Sprintf("room %d: the recording did not finish", k)
		})
		if err != nil {
			return row, err
		}
		for _, t := range m.Tracks {
			row.Lost += t.Stats.PacketsLost + t.Stats.PacketsLate
		}
		if !c.movedAt.IsZero() {
			continue
		}
		byUser := map[string]int{}
		base := len(pcalls)
		for i, p := range c.pubs {
			byUser[string(p.peer.UserID())] = base + i
			pcalls = append(pcalls, &placedCall{id: string(p.peer.UserID()), connected: allRecording, hungUp: stopAt})
			results = append(results, callResult{})
		}
		for _, t := range m.Tracks {
			if i, ok := byUser[t.UserID]; ok {
				results[i].Files = append(results[i].Files, fileResult{Path: filepath.Join(folder, t.File), Kind: t.Kind})
			}
		}
	}
	logf("fleet: checking the files of %d participants with ffprobe", len(pcalls))
	row.Files = checkCalls(ctx, pcalls, results)
	if len(row.Files.Problems) > 0 {
		logf("fleet: not whole: %s", strings.Join(row.Files.Problems, "; "))
	}
	logf("fleet, %d instances: spread %v, %.2f ms CPU per participant-second, %d/%d whole", n, row.Spread,
		ms(row.cpuPerParticipant()), row.Files.Whole, row.Files.Calls)
	return row, nil
}

// resumesOf is how many hand-overs the bench made of c's recording (its final manifest
// must list as many).
func resumesOf(calls []*fleetRoom, c *fleetRoom) int {
	if c.movedAt.IsZero() {
		return 0
	}
	return 1
}

// handOver stops (SIGTERM) or kills (-9) the instance that records one of the calls not
// moved yet, and waits until another instance's manifest of it lists every track
// recording again after a resume.
func (f *fleetBench) handOver(ctx context.Context, procs []*botProc, calls []*fleetRoom, perRoom int, kill bool, logf logFunc) *handOver {
	h := &handOver{}
	var c *fleetRoom
	from := -1
	for _, x := range calls {
		if x.movedAt.IsZero() {
			if o := ownerOf(procs, x.folder); o >= 0 {
				c, from = x, o
				break
			}
		}
	}
	if c == nil {
		h.Err = "no call left with a live owner"
		return h
	}
	p := procs[from]
	h.From = p.cfg.Instance.ID
	how := "SIGTERM"
	if kill {
		how = "kill -9"
	}
	logf("fleet: %s of %s, which records %s", how, h.From, c.folder)
	at := time.Now()
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		h.Err = err.Error()
		return h
	}
	c.movedAt = at
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		h.Err = "the instance did not exit within two minutes"
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
	var m *recorder.Manifest
	to := -1
	err := poll(ctx, 3*time.Minute, 100*time.Millisecond, func() (bool, string) {
		for i, q := range procs {
			if i == from || q.cmd == nil {
				continue
			}
			x, err := recorder.ReadManifest(filepath.Join(q.recordings(), c.folder))
			if err != nil || x.Status != recorder.StatusRecording || len(x.Resumes) == 0 {
				continue
			}
			resumed := x.Resumes[len(x.Resumes)-1].ResumedAt
			live := 0
			for _, t := range x.Tracks {
				if t.Status == recorder.StatusRecording && !t.StartedAt.Before(resumed.Add(-time.Second)) {
					live++
				}
			}
			if live >= 2*perRoom {
				m, to = x, i
				return true, ""
			}
		}
		return false, "no other instance continues the recording"
	})
	if err != nil {
		h.Err = err.Error()
		return h
	}
	h.Flowing = time.Since(at)
	h.To = procs[to].cfg.Instance.ID
	r := m.Resumes[len(m.Resumes)-1]
	h.Resumed, h.Gap = r.ResumedAt.Sub(at), r.ResumedAt.Sub(r.InterruptedAt)
	logf("fleet: %s continues after %v (resumed_at %v after the signal, gap %v)", h.To, h.Flowing.Round(10*time.Millisecond), h.Resumed.Round(10*time.Millisecond), h.Gap.Round(10*time.Millisecond))
	// The hole on the timeline, once the continued parts have some length.
	time.Sleep(4 * time.Second)
	if x, err := recorder.ReadManifest(filepath.Join(procs[to].recordings(), c.folder)); err == nil {
		h.Missing = timelineHole(x)
	}
	return h
}

// timelineHole is the largest hole between consecutive parts of one participant's track
// (same user and source) on the call's timeline.
func timelineHole(m *recorder.Manifest) time.Duration {
	parts := map[string][]recorder.FileEntry{}
	for _, t := range m.Tracks {
		k := t.UserID + "|" + t.Source + "|" + t.Kind
		parts[k] = append(parts[k], t)
	}
	var worst time.Duration
	for _, ps := range parts {
		sort.Slice(ps, func(i, j int) bool { return ps[i].StartOffsetMs < ps[j].StartOffsetMs })
		for i := 1; i < len(ps); i++ {
			end := ps[i-1].StartOffsetMs + ps[i-1].DurationMs
			worst = max(worst, time.Duration(ps[i].StartOffsetMs-end)*time.Millisecond)
		}
	}
	return worst
}

func (r report) fleetSection() string {
	var w writer
	var loads []loadSpan
	for _, x := range r.fleet {
		loads = append(loads, x.Load)
	}
	r.measured(&w, "fleet", loads)
	o := r.opts
	w.f("N instances of the real binary (issue 17's fleet) log in as one bot account, each with its own device,\n")
	w.f("`instance.id` and `data_dir`, on one PostgreSQL database (Debian's server, started by the bench on a\n")
	w.f("socket, a fresh database and account per N) and one S3 store (versitygw, the test harness's). %d Element\n", o.fleetCalls)
	w.f("Call calls (LiveKit, unencrypted, as in the LiveKit path) in %d rooms, %d publishers each sending Opus\n", o.fleetCalls, o.fleetPubs)
	w.f("and 1 Mbit/s VP8 from the bench process; `!start` in each room in turn, and the fleet decides which\n")
	w.f("instance records it. LiveKit calls, not legacy 1:1 calls: a legacy call's peer connection lives in the\n")
	w.f("process that answered it and cannot move (the fleet ends it with what was uploaded), so only LiveKit and\n")
	w.f("full-mesh calls have a hand-over to measure.\n\n")
	w.f("| Instances | Calls | Participants | Calls each instance took | CPU of all instances (%% of a core) | CPU per participant-second | Resident set, all instances | Participants recorded whole (calls not handed over) | Lost or late packets | Load before → after |\n")
	w.f("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, x := range r.fleet {
		spread := make([]string, len(x.Spread))
		for i, c := range x.Spread {
			spread[i] = strconv.Itoa(c)
		}
		w.f("| %d | %d | %d | %s | %.0f%% | %.2f ms | %s | %d/%d (%.1f s) | %d | %s |\n", x.Instances, x.Rooms, x.Participants, strings.Join(spread, " / "),
			100*x.CPU.Seconds()/x.Seconds, ms(x.cpuPerParticipant()), mib(x.RSS), x.Files.Whole, x.Files.Calls, x.Files.Shortfall.Seconds(), x.Lost, x.Load)
	}
	w.f("\nHand-over, with the calls going on (after the measured window):\n\n")
	w.f("| Instances | How | From → to | Signal → `resumed_at` | Signal → every track recording again | `resumed_at` − `interrupted_at` | Largest hole on the timeline |\n")
	w.f("|---|---|---|---|---|---|---|\n")
	for _, x := range r.fleet {
		for _, h := range []struct {
			how string
			h   *handOver
		}{{"SIGTERM (clean stop)", x.Term}, {"kill -9", x.Kill}} {
			if h.h == nil {
				continue
			}
			if h.h.Err != "" {
				w.f("| %d | %s | %s → ? | not measured: %s | | | |\n", x.Instances, h.how, h.h.From, h.h.Err)
				continue
			}
			w.f("| %d | %s | %s → %s | %.1f s | %.1f s | %.1f s | %.1f s |\n", x.Instances, h.how, h.h.From, h.h.To,
				h.h.Resumed.Seconds(), h.h.Flowing.Seconds(), h.h.Gap.Seconds(), h.h.Missing.Seconds())
		}
		for _, n := range x.Notes {
			w.f("\n%d instances: %s.\n", x.Instances, n)
		}
	}
	if r.fleetErr != "" {
		w.f("\nThe run stopped: %s\n", r.fleetErr)
	}
	w.f("\nCPU is the sum over every instance's process during a %v window with every track recording;\n", o.fleetWindow)
	w.f("per participant-second divides it by the participants and the window. Participants recorded whole:\n")
	w.f("as in the LiveKit path (audio and video file each hold the time from \"every call recording\" to `!stop`\n")
	w.f("minus %v), for the calls that were not handed over. A hand-over: the instance that records one call is\n", wholeSlack)
	w.f("stopped with SIGTERM (it pauses its recordings, confirms their copies in S3 and gives the rooms' leases\n")
	w.f("back) or killed with `kill -9` (its room's lease runs out, 6 s); the bench then polls the other instances'\n")
	w.f("call folders every 100 ms. \"Signal → `resumed_at`\" is the resume the continuing instance wrote in the\n")
	w.f("manifest (`resumes[]`); \"every track recording again\" is when its manifest first listed every\n")
	w.f("participant's new part recording. The manifest's `interrupted_at` is the last file change of the earlier\n")
	w.f("run. The largest hole on the timeline is between the end of a participant's earlier part (as the last\n")
	w.f("manifest the stopped instance stored in S3 says, at most 2 s old for a killed one) and the start of its\n")
	w.f("part written by the continuing instance: the media missing from the recording. With two instances the\n")
	w.f("instance stopped cleanly is started again before the kill, so the kill has somewhere to go.\n\n")
	return w.String()
}
