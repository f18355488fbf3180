package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Lease says which instance owns a piece of work (a recording, a room's autorecord
// watch) until when. Exactly one instance holds a resource's lease at a time: it takes it
// (AcquireLease), renews it every few seconds (RenewLease) and gives it back
// (ReleaseLease); once it stops renewing, the lease expires and another instance may take
// it over. Times are the database's clock, so the instances' clocks need not agree.
type Lease struct {
	Resource string
	Owner    string
	// Generation counts the changes of owner: work done under an older generation is
	// stale (a fencing token).
	Generation int64
	// AcquiredAt is when Owner took it; RenewedAt its last renewal.
	AcquiredAt time.Time
	RenewedAt  time.Time
	ExpiresAt  time.Time
}

// Held reports whether owner holds the lease (its expiry is the caller's to check
// against the database's clock: a lease is held until another instance takes it).
func (l *Lease) Held(owner string) bool { return l != nil && l.Owner == owner }

// HandedOver reports whether the holder gave the lease up for another instance to take
// (HandOverLease) rather than stopped renewing it.
func (l *Lease) HandedOver() bool { return l != nil && !l.ExpiresAt.After(l.RenewedAt) }

// ErrLeaseLost is returned by RenewLease when the lease is not the caller's any more:
// another instance took it over after it expired, or it was released.
var ErrLeaseLost = errors.New("lease lost")

// Resources: what leases are held on.

// RecordingResource is the lease of a recording: the instance that writes its files.
func RecordingResource(recordingID string) string { return "recording:" + recordingID }

// WatchResource is the lease of a room: the instance that records its calls and answers
// its commands (lifecycle/fleet.go).
func WatchResource(roomID string) string { return "watch:" + roomID }

// InstanceResource is the lease an instance holds on its own id while it runs, so that a
// second process started with the same id on the same database is refused.
func InstanceResource(instanceID string) string { return "instance:" + instanceID }

// nowSQL is the database's clock in Unix milliseconds, for one statement.
func (d *DB) nowSQL() string {
	if d.engine == Postgres {
		// now() is the transaction's start: one value for the whole statement.
		return "CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT)"
	}
	// 'now' is one value for the whole statement too (and julianday works on every
	// SQLite version, unlike unixepoch('subsec')).
	return "CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER)"
}

const leaseCols = `resource, owner, generation, acquired_at, renewed_at, expires_at`

func scanLease(row interface{ Scan(...any) error }) (*Lease, error) {
	var l Lease
	var acquired, renewed, expires int64
	err := row.Scan(&l.Resource, &l.Owner, &l.Generation, &acquired, &renewed, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	l.AcquiredAt, l.RenewedAt, l.ExpiresAt = time.UnixMilli(acquired).UTC(), time.UnixMilli(renewed).UTC(), time.UnixMilli(expires).UTC()
	return &l, nil
}

func checkLeaseArgs(resource, owner string, ttl time.Duration) error {
	switch {
	case resource == "" || owner == "":
		return errors.New("a lease needs a resource and an owner")
	case ttl < time.Millisecond:
		return fmt.Errorf("lease duration %s is too short", ttl)
	}
	return nil
}

// AcquireLease takes the lease on resource for owner, for ttl from now, when nobody holds
// it, when its holder's lease has expired (a take-over: the generation goes up), or when
// owner holds it already (a renewal). It returns the lease as it is after the attempt:
// Held(owner) says whether owner has it; otherwise it is the current holder's. One
// statement decides, so of instances that try at once exactly one wins, on both engines.
func (d *DB) AcquireLease(ctx context.Context, resource, owner string, ttl time.Duration) (*Lease, error) {
	if err := checkLeaseArgs(resource, owner, ttl); err != nil {
		return nil, err
	}
	now := d.nowSQL()
	// Every SET expression reads the row as it was, so "leases.owner" is the old holder.
	q := `INSERT INTO leases (` + leaseCols + `) VALUES ($1, $2, 1, ` + now + `, ` + now + `, ` + now + ` + $3)
		ON CONFLICT (resource) DO UPDATE SET
			generation = CASE WHEN leases.owner = excluded.owner THEN leases.generation ELSE leases.generation + 1 END,
			acquired_at = CASE WHEN leases.owner = excluded.owner THEN leases.acquired_at ELSE excluded.acquired_at END,
			owner = excluded.owner, renewed_at = excluded.renewed_at, expires_at = excluded.expires_at
		WHERE leases.owner = excluded.owner OR leases.expires_at <= excluded.acquired_at
		RETURNING ` + leaseCols
	// A holder that releases between the refused INSERT and the read leaves no row to
	// report: try again (a few times; each round someone made progress).
	for attempt := 0; attempt < 5; attempt++ {
		l, err := scanLease(d.db.QueryRow(ctx, q, resource, owner, ttl.Milliseconds()))
		if err == nil {
			return l, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("acquire the lease on %s: %w", resource, err)
		}
		cur, err := d.Lease(ctx, resource)
		if err == nil {
			return cur, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("acquire the lease on %s: it changed hands on every try", resource)
}

// RenewLease extends owner's lease on resource to ttl from now. ErrLeaseLost: owner does
// not hold it (any more). A lease that expired but that nobody took over is still owner's
// and is renewed.
func (d *DB) RenewLease(ctx context.Context, resource, owner string, ttl time.Duration) (*Lease, error) {
	if err := checkLeaseArgs(resource, owner, ttl); err != nil {
		return nil, err
	}
	now := d.nowSQL()
	l, err := scanLease(d.db.QueryRow(ctx, `UPDATE leases SET renewed_at = `+now+`, expires_at = `+now+` + $3
		WHERE resource = $1 AND owner = $2 RETURNING `+leaseCols, resource, owner, ttl.Milliseconds()))
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("renew the lease on %s: %w", resource, ErrLeaseLost)
	}
	if err != nil {
		return nil, fmt.Errorf("renew the lease on %s: %w", resource, err)
	}
	return l, nil
}

// HandOverLease makes owner's lease on resource expire now, marked as handed over
// (Lease.HandedOver): the holder asks another instance to take the work while it still
// does it (a clean stop). ErrLeaseLost: owner does not hold it (any more).
func (d *DB) HandOverLease(ctx context.Context, resource, owner string) (*Lease, error) {
	now := d.nowSQL()
	l, err := scanLease(d.db.QueryRow(ctx, `UPDATE leases SET renewed_at = `+now+`, expires_at = `+now+`
		WHERE resource = $1 AND owner = $2 RETURNING `+leaseCols, resource, owner))
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("hand over the lease on %s: %w", resource, ErrLeaseLost)
	}
	if err != nil {
		return nil, fmt.Errorf("hand over the lease on %s: %w", resource, err)
	}
	return l, nil
}

// TakeOverLease hands the lease on resource from owner from to owner to, for ttl from now,
// whether or not it has expired: for an owner that knows from is dead (its own previous
// process). ErrNotFound: from does not hold it (any more).
func (d *DB) TakeOverLease(ctx context.Context, resource, from, to string, ttl time.Duration) (*Lease, error) {
	if err := checkLeaseArgs(resource, to, ttl); err != nil {
		return nil, err
	}
	now := d.nowSQL()
	l, err := scanLease(d.db.QueryRow(ctx, `UPDATE leases SET owner = $3, generation = generation + 1, acquired_at = `+now+`,
		renewed_at = `+now+`, expires_at = `+now+` + $4 WHERE resource = $1 AND owner = $2 RETURNING `+leaseCols,
		resource, from, to, ttl.Milliseconds()))
	if err != nil {
		return nil, fmt.Errorf("take over the lease on %s from %s: %w", resource, from, err)
	}
	return l, nil
}

// ReleaseLease gives owner's lease on resource back (nothing happens when owner does not
// hold it). It reports whether there was one to give back.
func (d *DB) ReleaseLease(ctx context.Context, resource, owner string) (bool, error) {
	res, err := d.db.Exec(ctx, `DELETE FROM leases WHERE resource = $1 AND owner = $2`, resource, owner)
	if err != nil {
		return false, fmt.Errorf("release the lease on %s: %w", resource, err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// ReleaseLeases gives back every lease owner holds (a clean stop) and returns how many.
func (d *DB) ReleaseLeases(ctx context.Context, owner string) (int64, error) {
	res, err := d.db.Exec(ctx, `DELETE FROM leases WHERE owner = $1`, owner)
	if err != nil {
		return 0, fmt.Errorf("release the leases of %s: %w", owner, err)
	}
	return res.RowsAffected()
}

// Lease returns the lease on resource (ErrNotFound: nobody holds it).
func (d *DB) Lease(ctx context.Context, resource string) (*Lease, error) {
	l, err := scanLease(d.db.QueryRow(ctx, `SELECT `+leaseCols+` FROM leases WHERE resource = $1`, resource))
	if err != nil {
		return nil, fmt.Errorf("lease on %s: %w", resource, err)
	}
	return l, nil
}

// LeasesOf lists the leases owner holds, by resource.
func (d *DB) LeasesOf(ctx context.Context, owner string) ([]*Lease, error) {
	return d.queryLeases(ctx, `owner = $1 ORDER BY resource`, owner)
}

// ExpiredLeases lists the leases whose resource starts with prefix ("recording:") and
// whose holder stopped renewing them, oldest expiry first: work to take over.
func (d *DB) ExpiredLeases(ctx context.Context, prefix string) ([]*Lease, error) {
	return d.queryLeases(ctx, `substr(resource, 1, $1) = $2 AND expires_at <= `+d.nowSQL()+` ORDER BY expires_at`,
		len(prefix), prefix)
}

func (d *DB) queryLeases(ctx context.Context, where string, args ...any) ([]*Lease, error) {
	rows, err := d.db.Query(ctx, `SELECT `+leaseCols+` FROM leases WHERE `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	defer rows.Close()
	var out []*Lease
	for rows.Next() {
		l, err := scanLease(rows)
		if err != nil {
			return nil, fmt.Errorf("list leases: %w", err)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// DatabaseTime returns the database's clock (what lease expiries are compared with).
func (d *DB) DatabaseTime(ctx context.Context) (time.Time, error) {
	var ms int64
	if err := d.db.QueryRow(ctx, `SELECT `+d.nowSQL()).Scan(&ms); err != nil {
		return time.Time{}, fmt.Errorf("read the database's clock: %w", err)
	}
	return time.UnixMilli(ms).UTC(), nil
}

// LiveLease returns the lease on resource when someone holds it and it has not expired
// (ErrNotFound otherwise): who does the work now.
func (d *DB) LiveLease(ctx context.Context, resource string) (*Lease, error) {
	l, err := scanLease(d.db.QueryRow(ctx, `SELECT `+leaseCols+` FROM leases WHERE resource = $1 AND expires_at > `+d.nowSQL(), resource))
	if err != nil {
		return nil, fmt.Errorf("lease on %s: %w", resource, err)
	}
	return l, nil
}

// DeleteExpiredLeases deletes the expired leases whose resource starts with prefix
// (leases nobody renews, such as those on one command each) and returns how many.
func (d *DB) DeleteExpiredLeases(ctx context.Context, prefix string) (int64, error) {
	res, err := d.db.Exec(ctx, `DELETE FROM leases WHERE substr(resource, 1, $1) = $2 AND expires_at <= `+d.nowSQL(), len(prefix), prefix)
	if err != nil {
		return 0, fmt.Errorf("delete expired leases: %w", err)
	}
	return res.RowsAffected()
}

// EventResource is the lease on one Matrix event (a command, an invite) that several
// instances see: the instance that takes it answers it, the others stay silent.
func EventResource(eventID string) string { return "event:" + eventID }

// DropPredecessorLeases deletes the leases on resources starting with prefix ("watch:")
// whose owner starts with ownerPrefix (an instance's "id/") but is not owner: those of an
// earlier process of the same instance, which a new process holding the instance's own
// lease knows to be dead. It returns how many.
func (d *DB) DropPredecessorLeases(ctx context.Context, prefix, ownerPrefix, owner string) (int64, error) {
	res, err := d.db.Exec(ctx, `DELETE FROM leases WHERE substr(resource, 1, $1) = $2 AND substr(owner, 1, $3) = $4 AND owner <> $5`,
		len(prefix), prefix, len(ownerPrefix), ownerPrefix, owner)
	if err != nil {
		return 0, fmt.Errorf("drop the leases of earlier processes: %w", err)
	}
	return res.RowsAffected()
}

// OthersLive counts the unexpired leases on resources starting with prefix ("instance:")
// whose owner is not owner: the other instances running now.
func (d *DB) OthersLive(ctx context.Context, prefix, owner string) (int, error) {
	var n int
	err := d.db.QueryRow(ctx, `SELECT COUNT(*) FROM leases WHERE substr(resource, 1, $1) = $2 AND owner <> $3 AND expires_at > `+d.nowSQL(),
		len(prefix), prefix, owner).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count the other instances: %w", err)
	}
	return n, nil
}

// LiveOwners lists the owners of the unexpired leases on resources starting with prefix
// ("instance:"): the instances running now, as the owners of their work's leases.
func (d *DB) LiveOwners(ctx context.Context, prefix string) ([]string, error) {
	ls, err := d.queryLeases(ctx, `substr(resource, 1, $1) = $2 AND expires_at > `+d.nowSQL()+` ORDER BY owner`, len(prefix), prefix)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ls))
	for _, l := range ls {
		out = append(out, l.Owner)
	}
	return out, nil
}
