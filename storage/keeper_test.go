package storage

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A kept lease is renewed while it runs, refuses a second keeper, reports its loss once
// when another instance takes it, and is given back by Release.
func TestLeaseKeeper(t *testing.T) {
	eachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		d := e.open(t)
		res := InstanceResource("active")
		lost := make(chan error, 2)
		k, err := d.KeepLease(ctx, res, "a", 3*time.Second, func(err error) { lost <- err })
		if err != nil {
			t.Fatal(err)
		}
		first := k.Lease()
		var held *LeaseHeldError
		if _, err := d.KeepLease(ctx, res, "b", 3*time.Second, nil); !errors.As(err, &held) || held.Lease.Owner != "a" || !errors.Is(err, ErrLeaseHeld) {
			t.Fatalf("second keeper: %v", err)
		}
		// Renewed (every second): wait for one.
		deadline := time.Now().Add(20 * time.Second)
		for !k.Lease().RenewedAt.After(first.RenewedAt) {
			if time.Now().After(deadline) {
				t.Fatalf("not renewed: %+v (err %v)", k.Lease(), k.Err())
			}
			time.Sleep(50 * time.Millisecond)
		}
		if k.Err() != nil || !k.Lease().ExpiresAt.After(first.ExpiresAt) {
			t.Errorf("after a renewal: %+v %v", k.Lease(), k.Err())
		}
		// Taken over behind its back (as after a pause longer than the lease): the next
		// renewal finds out.
		if _, err := d.db.Exec(ctx, `UPDATE leases SET owner = 'b', generation = generation + 1 WHERE resource = $1`, res); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-lost:
			if !errors.Is(err, ErrLeaseLost) {
				t.Errorf("reported %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the loss was not reported")
		}
		if !errors.Is(k.Err(), ErrLeaseLost) {
			t.Errorf("Err after the loss: %v", k.Err())
		}
		// Release leaves the new holder's lease alone, and may be called twice.
		for i := 0; i < 2; i++ {
			if err := k.Release(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if l, err := d.Lease(ctx, res); err != nil || l.Owner != "b" {
			t.Errorf("after the old keeper's release: %+v %v", l, err)
		}
		if len(lost) != 0 {
			t.Error("the loss was reported twice")
		}
		// A keeper's Release gives its lease back.
		k2, err := d.KeepLease(ctx, WatchResource("!r:x"), "a", time.Minute, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := k2.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Lease(ctx, WatchResource("!r:x")); !errors.Is(err, ErrNotFound) {
			t.Errorf("released lease still there: %v", err)
		}
	})
}
