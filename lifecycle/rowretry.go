package lifecycle

import (
	"context"
	"time"

	"github.com/matrix-recorder/matrix-recorder/serial"
)

// A row write the database refuses (an outage, a restart) is not dropped: it waits in
// its recording's pendingRows and is tried again, after the writes that failed before
// it, until the database takes it. Memory stays bounded however long the outage: the
// writes wait one per row (a part's row, the recording's row for one kind of change), and
// a newer write for a row replaces the one that waited, since it carries the row's latest
// state. Nothing here runs on a media goroutine: only the recording's queue touches its
// pendingRows, and a scheduled retry is posted onto that queue.

// rowRetryMin and rowRetryMax bound the pause between two attempts while the database
// does not answer.
const (
	rowRetryMin = time.Second
	rowRetryMax = 10 * time.Second
)

// pendingRows are the row writes of one recording that wait for the database (only its
// queue's goroutine touches them).
type pendingRows struct {
	writes    []pendingWrite
	scheduled bool          // a retry is posted onto the queue after a pause
	pause     time.Duration // the pause before the next retry
}

// pendingWrite is one row's latest write.
type pendingWrite struct {
	key string // which row: "recording", "recording:<change>", "part:<file>", "answer"
	do  func(ctx context.Context) error
}

// put queues a write, replacing the one waiting for the same row; the row's write then
// goes after the others, as the newest.
func (p *pendingRows) put(key string, do func(ctx context.Context) error) {
	for i, w := range p.writes {
		if w.key == key {
			p.writes = append(p.writes[:i], p.writes[i+1:]...)
			break
		}
	}
	p.writes = append(p.writes, pendingWrite{key: key, do: do})
}

// writeRow writes a row of a live recording from its queue (q): at once when nothing
// waits, or after what waits. A write that fails waits, and a retry is scheduled.
func (lc *Lifecycle) writeRow(ctx context.Context, lr *liveRec, q *serial.Loop, key string, do func(ctx context.Context) error) {
	p := &lr.pending
	if len(p.writes) == 0 {
		err := do(ctx)
		if err == nil {
			return
		}
		lc.log.Warn().Err(err).Str("folder", lr.folder).Str("row", key).
			Msg("The state database did not take a row; it is kept and written again once the database answers")
		p.put(key, do)
		p.pause = 0
		lc.scheduleRows(lr, q)
		return
	}
	// Something waits, so a retry is scheduled already (scheduleRows keeps one while
	// writes wait); this one goes after them.
	p.put(key, do)
	if !p.scheduled {
		lc.scheduleRows(lr, q)
	}
}

// retryRows writes what waits, in order, until one fails; it reports whether all was
// written.
func (lc *Lifecycle) retryRows(ctx context.Context, lr *liveRec) bool {
	p := &lr.pending
	if len(p.writes) == 0 {
		return true
	}
	for len(p.writes) > 0 {
		if err := p.writes[0].do(ctx); err != nil {
			lc.log.Debug().Err(err).Str("folder", lr.folder).Int("waiting", len(p.writes)).Msg("The state database still does not take rows")
			return false
		}
		p.writes = p.writes[1:]
	}
	p.writes = nil
	lc.log.Info().Str("folder", lr.folder).Msg("The state database took the rows that waited")
	return true
}

// scheduleRows posts a retry onto the queue after a pause that grows while the database
// does not answer. A closed queue takes no post: its last write waits itself (drainRows).
func (lc *Lifecycle) scheduleRows(lr *liveRec, q *serial.Loop) {
	p := &lr.pending
	p.pause = min(max(2*p.pause, lc.rowRetryMin()), rowRetryMax)
	p.scheduled = true
	time.AfterFunc(p.pause, func() {
		q.Post(func() {
			p.scheduled = false
			ctx, cancel := lc.dbCtx()
			defer cancel()
			if !lc.retryRows(ctx, lr) {
				lc.scheduleRows(lr, q)
			}
		})
	})
}

// drainRows waits until what waits is written, or the recorder begins to shut down
// (after one last try then: the next start repairs the rows from the manifests, and a
// shutdown during an outage keeps its time for the uploads). The recording's last write
// calls it: its queue takes nothing after that, so no scheduled retry would run.
func (lc *Lifecycle) drainRows(lr *liveRec) {
	p := &lr.pending
	stopping := lc.ctx.Done()
	if lc.drainCtx != nil {
		stopping = lc.drainCtx.Done()
	}
	pause := time.Duration(0)
	for len(p.writes) > 0 {
		pause = min(max(2*pause, lc.rowRetryMin()), rowRetryMax)
		last := false
		select {
		case <-stopping:
			last = true
		case <-time.After(pause):
		}
		ctx, cancel := lc.dbCtx()
		ok := lc.retryRows(ctx, lr)
		cancel()
		if !ok && last {
			lc.log.Warn().Str("folder", lr.folder).Int("waiting", len(p.writes)).
				Msg("Stopping with rows the state database did not take; the next start repairs them from the manifest")
			return
		}
	}
}

func (lc *Lifecycle) rowRetryMin() time.Duration {
	if lc.rowRetry > 0 {
		return lc.rowRetry
	}
	return rowRetryMin
}
