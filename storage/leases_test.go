package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Acquire, renew, release and take-over, on both engines.
func TestLeaseSemantics(t *testing.T) {
	eachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		d := e.open(t)
		res := RecordingResource("abc")
		l, err := d.AcquireLease(ctx, res, "i1", time.Minute)
		if err != nil || !l.Held("i1") || l.Generation != 1 || !l.ExpiresAt.After(l.AcquiredAt) {
			t.Fatalf("first acquire: %+v %v", l, err)
		}
		now, err := d.DatabaseTime(ctx)
		if err != nil || l.ExpiresAt.Sub(now) < 50*time.Second || l.ExpiresAt.Sub(now) > time.Minute {
			t.Errorf("expiry %s against the database's clock %s: %v", l.ExpiresAt, now, err)
		}
		// Held: another instance is refused and told who holds it.
		other, err := d.AcquireLease(ctx, res, "i2", time.Minute)
		if err != nil || other.Held("i2") || !other.Held("i1") || other.Generation != 1 {
			t.Fatalf("second instance: %+v %v", other, err)
		}
		if _, err := d.RenewLease(ctx, res, "i2", time.Minute); !errors.Is(err, ErrLeaseLost) {
			t.Errorf("renewal by a non-holder: %v", err)
		}
		if ok, err := d.ReleaseLease(ctx, res, "i2"); err != nil || ok {
			t.Errorf("release by a non-holder: %v %v", ok, err)
		}
		// The holder acquiring again is a renewal: same generation, same acquired_at.
		again, err := d.AcquireLease(ctx, res, "i1", 2*time.Minute)
		if err != nil || !again.Held("i1") || again.Generation != 1 || !again.AcquiredAt.Equal(l.AcquiredAt) || !again.ExpiresAt.After(l.ExpiresAt) {
			t.Fatalf("re-acquire by the holder: %+v (was %+v) %v", again, l, err)
		}
		// Expired (1 ms, then a pause): another instance takes it over.
		if _, err := d.RenewLease(ctx, res, "i1", time.Millisecond); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		if exp, err := d.ExpiredLeases(ctx, "recording:"); err != nil || len(exp) != 1 || exp[0].Resource != res {
			t.Errorf("expired leases: %+v %v", exp, err)
		}
		if exp, err := d.ExpiredLeases(ctx, "watch:"); err != nil || len(exp) != 0 {
			t.Errorf("expired watch leases: %+v %v", exp, err)
		}
		took, err := d.AcquireLease(ctx, res, "i2", time.Minute)
		if err != nil || !took.Held("i2") || took.Generation != 2 || !took.AcquiredAt.After(l.AcquiredAt) {
			t.Fatalf("take-over: %+v %v", took, err)
		}
		// The old holder finds out at its next renewal.
		if _, err := d.RenewLease(ctx, res, "i1", time.Minute); !errors.Is(err, ErrLeaseLost) {
			t.Errorf("renewal after a take-over: %v", err)
		}
		if r, err := d.RenewLease(ctx, res, "i2", time.Minute); err != nil || r.Generation != 2 {
			t.Errorf("renewal by the new holder: %+v %v", r, err)
		}
		// An expired lease nobody took is still its holder's to renew.
		w := WatchResource("!r:x")
		if _, err := d.AcquireLease(ctx, w, "i1", time.Millisecond); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		if r, err := d.RenewLease(ctx, w, "i1", time.Minute); err != nil || !r.Held("i1") {
			t.Errorf("renewal of an expired lease nobody took: %+v %v", r, err)
		}
		if ls, err := d.LeasesOf(ctx, "i2"); err != nil || len(ls) != 1 || ls[0].Resource != res {
			t.Errorf("leases of i2: %+v %v", ls, err)
		}
		if ok, err := d.ReleaseLease(ctx, res, "i2"); err != nil || !ok {
			t.Errorf("release: %v %v", ok, err)
		}
		if _, err := d.Lease(ctx, res); !errors.Is(err, ErrNotFound) {
			t.Errorf("released lease still there: %v", err)
		}
		// Free again: the next one starts a new life.
		if l, err := d.AcquireLease(ctx, res, "i3", time.Minute); err != nil || !l.Held("i3") || l.Generation != 1 {
			t.Errorf("after release: %+v %v", l, err)
		}
		if n, err := d.ReleaseLeases(ctx, "i1"); err != nil || n != 1 {
			t.Errorf("release all of i1: %d %v", n, err)
		}
		for _, bad := range []struct {
			res, owner string
			ttl        time.Duration
		}{{"", "i1", time.Minute}, {res, "", time.Minute}, {res, "i1", 0}} {
			if _, err := d.AcquireLease(ctx, bad.res, bad.owner, bad.ttl); err == nil {
				t.Errorf("acquire %+v accepted", bad)
			}
		}
	})
}

// Many instances (each its own connection to the database, as separate processes have)
// race for the same resources: each resource ends with exactly one owner, and every
// instance agrees who it is. Then the owner's lease expires and they race again: exactly
// one takes it over.
func TestLeaseRaceHasOneWinner(t *testing.T) {
	eachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		const instances, resources = 6, 20
		dbs := make([]*DB, instances)
		for i := range dbs {
			dbs[i] = e.open(t)
		}
		race := func(round int, ttl time.Duration) map[string]string {
			t.Helper()
			type result struct {
				inst, res string
				l         *Lease
				err       error
			}
			results := make(chan result, instances*resources)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i, d := range dbs {
				inst := fmt.Sprintf("inst-%d", i)
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					for r := 0; r < resources; r++ {
						res := RecordingResource(fmt.Sprintf("rec-%d", r))
						l, err := d.AcquireLease(ctx, res, inst, ttl)
						results <- result{inst, res, l, err}
					}
				}()
			}
			close(start)
			wg.Wait()
			close(results)
			winners := map[string]string{}
			claimed := map[string]string{}
			for r := range results {
				if r.err != nil {
					t.Fatalf("round %d: %s acquiring %s: %v", round, r.inst, r.res, r.err)
				}
				if r.l.Held(r.inst) {
					if w, ok := winners[r.res]; ok && w != r.inst {
						t.Errorf("round %d: %s won by %s and by %s", round, r.res, w, r.inst)
					}
					winners[r.res] = r.inst
				} else {
					claimed[r.res+" "+r.inst] = r.l.Owner
				}
			}
			for k, owner := range claimed {
				res := k[:len(k)-len(" inst-0")]
				if winners[res] != owner {
					t.Errorf("round %d: a loser was told %s holds %s, the winner is %s", round, owner, res, winners[res])
				}
			}
			if len(winners) != resources {
				t.Fatalf("round %d: %d of %d resources have an owner", round, len(winners), resources)
			}
			for res, w := range winners {
				l, err := dbs[0].Lease(ctx, res)
				if err != nil || l.Owner != w {
					t.Errorf("round %d: %s stored as %+v, won by %s (%v)", round, res, l, w, err)
				}
			}
			return winners
		}
		first := race(1, time.Minute)
		// Every owner stops renewing: its lease runs out.
		for res, w := range first {
			if _, err := dbs[0].RenewLease(ctx, res, w, time.Millisecond); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(20 * time.Millisecond)
		second := race(2, time.Minute)
		changed := 0
		for res, w := range second {
			l, _ := dbs[0].Lease(ctx, res)
			want := int64(1) // the old owner took its own lease again
			if w != first[res] {
				changed++
				want = 2
			}
			if l.Generation != want {
				t.Errorf("%s: %s then %s, generation %d, want %d", res, first[res], w, l.Generation, want)
			}
		}
		t.Logf("%d of %d expired leases changed hands", changed, resources)
	})
}

// A take-over from a named owner works whether or not its lease expired, and only from
// that owner.
func TestTakeOverLease(t *testing.T) {
	eachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		d := e.open(t)
		res := InstanceResource("rec-1")
		if _, err := d.AcquireLease(ctx, res, "a/1", time.Hour); err != nil {
			t.Fatal(err)
		}
		if _, err := d.TakeOverLease(ctx, res, "b/1", "a/2", time.Minute); !errors.Is(err, ErrNotFound) {
			t.Errorf("take-over from a non-holder: %v", err)
		}
		l, err := d.TakeOverLease(ctx, res, "a/1", "a/2", time.Minute)
		if err != nil || !l.Held("a/2") || l.Generation != 2 {
			t.Fatalf("take-over: %+v %v", l, err)
		}
		if _, err := d.RenewLease(ctx, res, "a/1", time.Minute); !errors.Is(err, ErrLeaseLost) {
			t.Errorf("the old owner renewed after the take-over: %v", err)
		}
		k := d.KeepHeldLease(ctx, l, time.Minute, nil)
		if k.Lease().Owner != "a/2" || k.Err() != nil {
			t.Errorf("keeper of a taken-over lease: %+v %v", k.Lease(), k.Err())
		}
		if err := k.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Lease(ctx, res); !errors.Is(err, ErrNotFound) {
			t.Errorf("after release: %v", err)
		}
	})
}

// A lease handed over is expired at once, says so, and goes to the next instance that
// tries; a renewed one does not look handed over.
func TestHandOverLease(t *testing.T) {
	eachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		d := e.open(t)
		res := WatchResource("!r:x")
		l, err := d.AcquireLease(ctx, res, "i1", time.Minute)
		if err != nil || l.HandedOver() {
			t.Fatalf("acquire: %+v %v", l, err)
		}
		if _, err := d.HandOverLease(ctx, res, "i2"); !errors.Is(err, ErrLeaseLost) {
			t.Errorf("hand-over by a non-holder: %v", err)
		}
		h, err := d.HandOverLease(ctx, res, "i1")
		if err != nil || !h.HandedOver() || !h.Held("i1") {
			t.Fatalf("hand-over: %+v %v", h, err)
		}
		exp, err := d.ExpiredLeases(ctx, WatchResource(""))
		if err != nil || len(exp) != 1 || !exp[0].HandedOver() {
			t.Fatalf("expired after the hand-over: %+v %v", exp, err)
		}
		taken, err := d.AcquireLease(ctx, res, "i2", time.Minute)
		if err != nil || !taken.Held("i2") || taken.HandedOver() || taken.Generation != 2 {
			t.Errorf("taken after the hand-over: %+v %v", taken, err)
		}
	})
}
