package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// LeaseKeeper holds a lease for as long as it runs: it renews it every third of its
// duration, so that two renewals can fail (a database restart, a network hiccup) before
// the lease runs out. When a renewal finds the lease taken (ErrLeaseLost) it stops and
// reports the loss once; other renewal errors are retried at the next tick.
type LeaseKeeper struct {
	d        *DB
	resource string
	owner    string
	ttl      time.Duration
	onLost   func(error)

	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	lease   *Lease
	lost    error
	lastErr error
}

// KeepLease acquires the lease on resource for owner and keeps renewing it until
// Release. When another instance holds it, the lease it holds is returned with
// ErrLeaseHeld. onLost (may be nil) is called once, from the keeper's goroutine, if the
// lease is lost later.
func (d *DB) KeepLease(ctx context.Context, resource, owner string, ttl time.Duration, onLost func(error)) (*LeaseKeeper, error) {
	l, err := d.AcquireLease(ctx, resource, owner, ttl)
	if err != nil {
		return nil, err
	}
	if !l.Held(owner) {
		return nil, &LeaseHeldError{Lease: *l}
	}
	return d.KeepHeldLease(ctx, l, ttl, onLost), nil
}

// KeepHeldLease keeps renewing a lease its owner holds already (from TakeOverLease), as
// KeepLease does.
func (d *DB) KeepHeldLease(ctx context.Context, l *Lease, ttl time.Duration, onLost func(error)) *LeaseKeeper {
	kctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	k := &LeaseKeeper{d: d, resource: l.Resource, owner: l.Owner, ttl: ttl, onLost: onLost, cancel: cancel, done: make(chan struct{}), lease: l}
	go k.run(kctx)
	return k
}

// ErrLeaseHeld is what a LeaseHeldError is.
var ErrLeaseHeld = errors.New("lease held by another owner")

// LeaseHeldError says who holds a lease that could not be taken.
type LeaseHeldError struct{ Lease Lease }

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("%s is held by %s until %s", e.Lease.Resource, e.Lease.Owner, e.Lease.ExpiresAt.Format(time.RFC3339))
}

func (e *LeaseHeldError) Unwrap() error { return ErrLeaseHeld }

func (k *LeaseKeeper) run(ctx context.Context) {
	defer close(k.done)
	t := time.NewTicker(k.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, k.ttl/3)
		l, err := k.d.RenewLease(rctx, k.resource, k.owner, k.ttl)
		cancel()
		k.mu.Lock()
		switch {
		case err == nil:
			k.lease, k.lastErr = l, nil
		case errors.Is(err, ErrLeaseLost):
			k.lost = err
		default:
			k.lastErr = err
		}
		k.mu.Unlock()
		if errors.Is(err, ErrLeaseLost) {
			if k.onLost != nil {
				k.onLost(err)
			}
			return
		}
	}
}

// Lease returns the lease as of its last renewal.
func (k *LeaseKeeper) Lease() Lease {
	k.mu.Lock()
	defer k.mu.Unlock()
	return *k.lease
}

// Err reports the keeper's state: ErrLeaseLost once the lease was taken, the last renewal's
// error while renewals fail, nil while the lease is held.
func (k *LeaseKeeper) Err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.lost != nil {
		return k.lost
	}
	if k.lastErr != nil {
		return fmt.Errorf("renew the lease on %s: %w", k.resource, k.lastErr)
	}
	return nil
}

// Stop stops renewing without giving the lease back (it runs out by itself). It is
// idempotent.
func (k *LeaseKeeper) Stop() {
	k.cancel()
	<-k.done
}

// Release stops renewing and gives the lease back (unless it was lost). It is idempotent.
func (k *LeaseKeeper) Release(ctx context.Context) error {
	k.cancel()
	<-k.done
	k.mu.Lock()
	lost := k.lost != nil
	k.mu.Unlock()
	if lost {
		return nil
	}
	_, err := k.d.ReleaseLease(ctx, k.resource, k.owner)
	return err
}
