package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
	Files        fileCheck // every participant
	// Missing sums up the media the participants lost, by what happened to their call:
	// "none", "SIGTERM", "kill -9", "SIGTERM, then kill -9".
	Missing    map[string]*missing
	Term, Kill *handOver
	Load       loadSpan
	Notes      []string
}

func (r fleetRow) cpuPerParticipant() time.Duration {
	return time.Duration(float64(r.CPU) / float64(r.Participants) / r.Seconds)
}

// missing is the media lost by the participants of the calls with one history.
type missing struct {
	Participants int
	Worst, Sum   time.Duration
}

// handOver is one call moved from its instance to another.
type handOver struct {
	From, To string
	// Resumed runs from the signal to the resume the manifest records (resumed_at);
	// Flowing to the moment the continuing instance's manifest lists every track again.
	Resumed, Flowing time.Duration
	// Gap is the manifest's resumed_at − interrupted_at; Hole the largest hole on
	// the call's timeline between a track's parts (the earlier part's end as the
	// manifest in S3 says it).
	Gap, Hole time.Duration
	// Calls is how many calls moved (all the instance recorded); Each the resume of
	// each (signal → resumed_at), in order.
	Calls int
	Each  []time.Duration
	Err   string
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
	room   id.RoomID
	pubs   []*lkPublisher
	folder string   // the call folder's name (the same on every instance)
	moves  int      // hand-overs the bench caused
	how    []string // which, in order
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
	row = fleetRow{Instances: n, Rooms: rooms, Participants: rooms * perRoom, Seconds: window.Seconds(), Spread: make([]int, n), Missing: map[string]*missing{}}
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
		if o := ownerOf(procs, c.folder); o >= 0 {
			logf("fleet: room %d recorded by %s", k, procs[o].cfg.Instance.ID)
		}
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
		row.Notes = append(row.Notes, "nothing to hand over to")
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
	length := stopAt.Sub(allRecording)
	for k, c := range calls {
		var m *recorder.Manifest
		err := poll(ctx, 2*time.Minute, 100*time.Millisecond, func() (bool, string) {
			for _, p := range procs {
				x, err := recorder.ReadManifest(filepath.Join(p.recordings(), c.folder))
				if err == nil && (x.Status == recorder.StatusFinished || x.Status == recorder.StatusComplete) && len(x.Resumes) >= c.moves {
					m = x
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
		logf("fleet: room %d (%d hand-overs): checking the files with ffprobe", k, c.moves)
		miss, problems := coverage(ctx, procs, c, m, allRecording, stopAt)
		for _, p := range c.pubs {
			worst, ok := miss[string(p.peer.UserID())]
			label := "none"
			if len(c.how) > 0 {
				label = strings.Join(c.how, ", then ")
			}
			sum := row.Missing[label]
			if sum == nil {
				sum = &missing{}
				row.Missing[label] = sum
			}
			sum.Participants++
			sum.Worst, sum.Sum = max(sum.Worst, worst), sum.Sum+max(0, worst)
			row.Files.Calls++
			row.Files.Shortfall = max(row.Files.Shortfall, worst)
			if ok && worst <= wholeSlack {
				row.Files.Whole++
			} else if len(row.Files.Problems) < 3 {
				row.Files.Problems = append(row.Files.Problems, fmt.Sprintf("%s: %.1f s of %.1f s missing", p.peer.UserID(), worst.Seconds(), length.Seconds()))
			}
		}
		row.Files.Problems = append(row.Files.Problems, problems...)
	}
	if len(row.Files.Problems) > 0 {
		logf("fleet: not whole: %s", strings.Join(row.Files.Problems, "; "))
	}
	logf("fleet, %d instances: spread %v, %.2f ms CPU per participant-second, %d/%d whole, missing: %s", n, row.Spread,
		ms(row.cpuPerParticipant()), row.Files.Whole, row.Files.Calls, row.missingText())
	return row, nil
}

// coverage measures, for each participant of c, the media missing from its audio and
// its video (the worse of the two) between from and to: the parts of each track placed
// on the call's timeline (start_offset_ms from the manifest, length counted by ffprobe
// in the file, found on the disk of whichever instance wrote it), their union cut to the
// interval, subtracted from the interval.
func coverage(ctx context.Context, procs []*botProc, c *fleetRoom, m *recorder.Manifest, from, to time.Time) (map[string]time.Duration, []string) {
	lo, hi := from.Sub(m.StartedAt), to.Sub(m.StartedAt)
	spans := map[string][]span{} // user|kind
	var problems []string
	for _, t := range m.Tracks {
		path := ""
		var size int64 = -1
		for _, p := range procs {
			f := filepath.Join(p.recordings(), c.folder, t.File)
			if st, err := os.Stat(f); err == nil && st.Size() > size {
				path, size = f, st.Size()
			}
		}
		if path == "" {
			problems = append(problems, t.File+": on no instance's disk")
			continue
		}
		d, err := mediaDuration(ctx, path, t.Kind)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		start := time.Duration(t.StartOffsetMs) * time.Millisecond
		k := t.UserID + "|" + t.Kind
		spans[k] = append(spans[k], span{start, start + d})
	}
	out := map[string]time.Duration{}
	for _, p := range c.pubs {
		u := string(p.peer.UserID())
		worst := time.Duration(-1)
		for _, kind := range []string{"audio", "video"} {
			worst = max(worst, uncovered(spans[u+"|"+kind], lo, hi))
		}
		out[u] = worst
	}
	return out, problems
}

// span is a part of a track on the call's timeline.
type span struct{ a, b time.Duration }

// uncovered is how much of [lo, hi) no span covers.
func uncovered(spans []span, lo, hi time.Duration) time.Duration {
	ss := slices.Clone(spans)
	sort.Slice(ss, func(i, j int) bool { return ss[i].a < ss[j].a })
	covered, at := time.Duration(0), lo
	for _, s := range ss {
		a, b := max(s.a, at), min(s.b, hi)
		if b > a {
			covered += b - a
			at = b
		}
	}
	return hi - lo - covered
}

// handOver stops (SIGTERM) or kills (-9) the instance that records the first call not
// handed over yet (every call it records moves with it) and waits until, for each of
// those calls, another instance's manifest lists a resume and every track recording
// again after it. The times are the worst over the calls moved.
func (f *fleetBench) handOver(ctx context.Context, procs []*botProc, calls []*fleetRoom, perRoom int, kill bool, logf logFunc) *handOver {
	h := &handOver{}
	// The instance to stop: one that records a call, preferring the fewest calls moved
	// already (each hand-over's loss is then measured on its own where it can be).
	from, best := -1, 0
	for i := range procs {
		owns, movedBefore := 0, 0
		for _, x := range calls {
			if ownerOf(procs, x.folder) == i {
				owns++
				if x.moves > 0 {
					movedBefore++
				}
			}
		}
		if owns > 0 && (from < 0 || movedBefore < best) {
			from, best = i, movedBefore
		}
	}
	if from < 0 {
		h.Err = "no call with a live owner"
		return h
	}
	sig, how := syscall.SIGTERM, "SIGTERM"
	if kill {
		sig, how = syscall.SIGKILL, "kill -9"
	}
	var moved []*fleetRoom
	for _, x := range calls {
		if ownerOf(procs, x.folder) == from {
			moved = append(moved, x)
			x.moves++
			x.how = append(x.how, how)
		}
	}
	h.Calls = len(moved)
	p := procs[from]
	h.From = p.cfg.Instance.ID
	logf("fleet: %s of %s, which records %d calls", how, h.From, len(moved))
	at := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		h.Err = err.Error()
		return h
	}
	// The others are watched from the signal on: a clean stop records on until another
	// instance records its calls, and exits only after that.
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case <-p.done:
		case <-time.After(2 * time.Minute):
			h.Err = "the instance did not exit within two minutes"
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}()
	done := map[*fleetRoom]bool{}
	var to []string
	err := poll(ctx, 3*time.Minute, 100*time.Millisecond, func() (bool, string) {
		for _, c := range moved {
			if done[c] {
				continue
			}
			for _, q := range procs {
				if q.cmd == nil || q == p {
					continue
				}
				x, err := recorder.ReadManifest(filepath.Join(q.recordings(), c.folder))
				if err != nil || x.Status != recorder.StatusRecording || len(x.Resumes) < c.moves {
					continue
				}
				r := x.Resumes[len(x.Resumes)-1]
				live := 0
				for _, t := range x.Tracks {
					if t.Status == recorder.StatusRecording && !t.StartedAt.Before(r.ResumedAt.Add(-time.Second)) {
						live++
					}
				}
				if live < 2*perRoom {
					continue
				}
				done[c] = true
				h.Flowing = max(h.Flowing, time.Since(at))
				h.Resumed = max(h.Resumed, r.ResumedAt.Sub(at))
				h.Each = append(h.Each, r.ResumedAt.Sub(at))
				if kill {
					h.Gap = max(h.Gap, r.ResumedAt.Sub(r.InterruptedAt))
				}
				if !slices.Contains(to, q.cfg.Instance.ID) {
					to = append(to, q.cfg.Instance.ID)
				}
			}
		}
		return len(done) == len(moved), fmt.Sprintf("%d of %d calls continued by another instance", len(done), len(moved))
	})
	<-exited
	p.cmd = nil
	sort.Strings(to)
	slices.Sort(h.Each)
	h.To = strings.Join(to, ", ")
	if err != nil && h.Err == "" {
		h.Err = err.Error()
	}
	if h.Err != "" {
		return h
	}
	logf("fleet: %s continue(s) after %v (resumed_at %v after the signal, gap %v)", h.To, h.Flowing.Round(10*time.Millisecond),
		h.Resumed.Round(10*time.Millisecond), h.Gap.Round(10*time.Millisecond))
	// The hole on the timeline, once the continued parts have some length.
	time.Sleep(4 * time.Second)
	first := true
	for _, c := range moved {
		for _, q := range procs {
			if q.cmd == nil {
				continue
			}
			x, err := recorder.ReadManifest(filepath.Join(q.recordings(), c.folder))
			if err != nil || x.Status != recorder.StatusRecording {
				continue
			}
			if kill {
				h.Hole = max(h.Hole, timelineHole(x))
				continue
			}
			// A clean stop records on after the hand-over: the taker's manifest gets the
			// stopped instance's last parts when the recording ends; the stopped
			// instance's own manifest has them now.
			y, err := recorder.ReadManifest(filepath.Join(p.recordings(), c.folder))
			if err != nil {
				continue
			}
			gap, hole := handOverJoin(x, y)
			if first {
				h.Gap, h.Hole, first = gap, hole, false
			} else {
				h.Gap, h.Hole = max(h.Gap, gap), max(h.Hole, hole)
			}
		}
	}
	return h
}

// handOverJoin is how the taker's manifest x and the stopped instance's own y join
// after a clean stop: resumed_at minus the stopped instance's last write (negative: the
// files overlap), and the largest hole between consecutive parts (negative: the smallest
// overlap), with the stopped instance's parts as long as y says.
func handOverJoin(x, y *recorder.Manifest) (gap, hole time.Duration) {
	theirs := map[string]recorder.FileEntry{}
	for _, t := range y.Tracks {
		theirs[t.File] = t
	}
	merged := *x
	merged.Tracks = slices.Clone(x.Tracks)
	var last time.Time
	for i, t := range merged.Tracks {
		if o, ok := theirs[t.File]; ok && o.DurationMs > t.DurationMs {
			merged.Tracks[i] = o
			if o.EndedAt != nil && o.EndedAt.After(last) {
				last = *o.EndedAt
			}
		}
	}
	if n := len(x.Resumes); n > 0 && !last.IsZero() {
		gap = x.Resumes[n-1].ResumedAt.Sub(last)
	}
	hole, _ = timelineJoin(&merged)
	return gap, hole
}

// timelineHole is the largest hole between consecutive parts of one participant's track
// (same user and source) on the call's timeline.
func timelineHole(m *recorder.Manifest) time.Duration {
	d, _ := timelineJoin(m)
	return max(d, 0)
}

// timelineJoin is the largest difference between the start of a part and the end of the
// part before it of one participant's track: a hole when positive, the smallest overlap
// when negative; ok is false when no track has two parts.
func timelineJoin(m *recorder.Manifest) (worst time.Duration, ok bool) {
	parts := map[string][]recorder.FileEntry{}
	for _, t := range m.Tracks {
		k := t.UserID + "|" + t.Source + "|" + t.Kind
		parts[k] = append(parts[k], t)
	}
	for _, ps := range parts {
		sort.Slice(ps, func(i, j int) bool { return ps[i].StartOffsetMs < ps[j].StartOffsetMs })
		for i := 1; i < len(ps); i++ {
			end := ps[i-1].StartOffsetMs + ps[i-1].DurationMs
			d := time.Duration(ps[i].StartOffsetMs-end) * time.Millisecond
			if !ok || d > worst {
				worst, ok = d, true
			}
		}
	}
	return worst, ok
}

func (r report) fleetSection() string {
	w := section(r, "fleet", r.fleet)
	o := r.opts
	w.f("N instances of the real binary (issue 17's fleet) log in as one bot account, each with its own device,\n")
	w.f("`instance.id` and `data_dir`, on one PostgreSQL database (Debian's server, started by the bench on a\n")
	w.f("socket, a fresh database and account per N) and one S3 store (versitygw, the test harness's). %d Element\n", o.fleetCalls)
	w.f("Call calls (LiveKit, unencrypted, as in the LiveKit path) in %d rooms, %d publishers each sending Opus\n", o.fleetCalls, o.fleetPubs)
	w.f("and 1 Mbit/s VP8 from the bench process; `!start` in each room in turn, and the fleet decides which\n")
	w.f("instance records it. LiveKit calls, not legacy 1:1 calls: a legacy call's peer connection lives in the\n")
	w.f("process that answered it and cannot move (the fleet ends it with what was uploaded), so only LiveKit and\n")
	w.f("full-mesh calls have a hand-over to measure.\n\n")
	w.f("| Instances | Calls | Participants | Calls each instance took | CPU of all instances (%% of a core) | CPU per participant-second | Resident set, all instances | Participants recorded whole (worst missing) | Media missing per participant, by what happened to the call: worst (mean) [participants] | Lost or late packets | Load before → after |\n")
	w.f("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, x := range r.fleet {
		spread := make([]string, len(x.Spread))
		for i, c := range x.Spread {
			spread[i] = strconv.Itoa(c)
		}
		moved := x.missingText()
		w.f("| %d | %d | %d | %s | %.0f%% | %.2f ms | %s | %d/%d (%.1f s) | %s | %d | %s |\n", x.Instances, x.Rooms, x.Participants, strings.Join(spread, " / "),
			100*x.CPU.Seconds()/x.Seconds, ms(x.cpuPerParticipant()), mib(x.RSS), x.Files.Whole, x.Files.Calls, x.Files.Shortfall.Seconds(), moved, x.Lost, x.Load)
	}
	w.f("\nHand-over, with the calls going on (after the measured window):\n\n")
	w.f("| Instances | How | From → to | Calls moved | Signal → `resumed_at`, each call | Signal → every track recording again (within 10 s, issue 17) | `resumed_at` − `interrupted_at` | Largest hole between parts in the manifest |\n")
	w.f("|---|---|---|---|---|---|---|---|\n")
	for _, x := range r.fleet {
		for _, h := range []struct {
			how string
			h   *handOver
		}{{"SIGTERM (clean stop)", x.Term}, {"kill -9", x.Kill}} {
			if h.h == nil {
				continue
			}
			if h.h.Err != "" {
				w.f("| %d | %s | %s → %s | %d | not measured: %s | | | |\n", x.Instances, h.how, h.h.From, h.h.To, h.h.Calls, h.h.Err)
				continue
			}
			each := make([]string, len(h.h.Each))
			for i, d := range h.h.Each {
				each[i] = fmt.Sprintf("%.1f", d.Seconds())
			}
			w.f("| %d | %s | %s → %s | %d | %s s | %.1f s %s | %.1f s | %.1f s |\n", x.Instances, h.how, h.h.From, h.h.To, h.h.Calls,
				strings.Join(each, ", "), h.h.Flowing.Seconds(), mark(h.h.Flowing <= 10*time.Second), h.h.Gap.Seconds(), h.h.Hole.Seconds())
		}
	}
	for _, x := range r.fleet {
		for _, n := range x.Notes {
			w.f("\nWith %d instance(s): %s.\n", x.Instances, n)
		}
	}
	if r.fleetErr != "" {
		w.f("\nThe run stopped: %s\n", r.fleetErr)
	}
	w.f("\nCPU is the sum over every instance's process during a %v window with every track recording;\n", o.fleetWindow)
	w.f("per participant-second divides it by the participants and the window. After the window come the\n")
	w.f("hand-overs, with the calls going on: the instance that records the first call not moved yet is stopped\n")
	w.f("with SIGTERM (it hands the rooms over and records on until the instance that takes them records every\n")
	w.f("track, then pauses and confirms its copies in S3); it is started again (so that with two instances the\n")
	w.f("next hand-over has somewhere to go), and the instance that records calls, the fewest of them moved\n")
	w.f("already, is killed with `kill -9` (its rooms' leases run out, 5 s). Every call the instance recorded\n")
	w.f("moves; the times are the worst over them, and each call's resume is listed. The bench polls the other\n")
	w.f("instances' call folders every 100 ms from the signal on: \"Signal → `resumed_at`\" is the resume the\n")
	w.f("continuing instance wrote in the manifest (`resumes[]`), \"every track recording again\" when its\n")
	w.f("manifest first listed every participant's new part recording. After a kill, `interrupted_at` is the\n")
	w.f("earlier run's last file change and the hole between parts the manifest's: from the end of a\n")
	w.f("participant's earlier part as the stopped instance's last manifest in S3 says it (stored every 1.7 s) to\n")
	w.f("the start of its part written by the continuing instance. After a clean stop both are taken with the\n")
	w.f("stopped instance's parts as long as its own final manifest says (the continuing instance's manifest\n")
	w.f("gets them when the recording ends): negative means the two instances' files overlap by that much.\n\n")
	w.f("Recorded whole and media missing are measured in the files after `!stop`: each part of a participant's\n")
	w.f("audio and video placed on the call's timeline (its `start_offset_ms`, its length counted by ffprobe in the\n")
	w.f("file on the disk of the instance that wrote it), the union cut to the time from \"every call recording\"\n")
	w.f("to `!stop`; missing is that time minus the union, the worse of audio and video; whole is at most %v\n", wholeSlack)
	w.f("missing, as in the other tables. For a killed instance that is the file on its disk (what a host that\n")
	w.f("comes back uploads); the copy in S3 holds only the upload parts (5 MB) completed before the kill until it\n")
	w.f("does. The publishers (this process), livekit-server, Dendrite and PostgreSQL share the 2 cores.\n\n")
	w.f("Not measured here: the most participants N instances record. The instances of one machine share its\n")
	w.f("cores, so on this machine N instances record at most what one does, less their overhead (see the LiveKit path and the whole\n")
	w.f("bot's largest load for one instance); what an extra instance costs is in the table (its resident set,\n")
	w.f("its idle CPU in the sum). A fleet's capacity is the sum of its hosts', which one 2-core machine cannot show.\n\n")
	return w.String()
}

// missingText is the media missing by history: "none: 0.1 s (0.0 s) [6]; kill -9: ...".
func (r fleetRow) missingText() string {
	var parts []string
	for _, k := range []string{"none", "SIGTERM", "kill -9", "SIGTERM, then kill -9"} {
		if m := r.Missing[k]; m != nil {
			parts = append(parts, fmt.Sprintf("%s: %.1f s (%.1f s) [%d]", k, m.Worst.Seconds(), m.Sum.Seconds()/float64(m.Participants), m.Participants))
		}
	}
	return strings.Join(parts, "; ")
}
