package lifecycle

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/internal/devpg"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// pg is the PostgreSQL server of this package's tests.
var pg devpg.Shared

func TestMain(m *testing.M) { os.Exit(pg.Run(m)) }

// startPostgres returns a fresh PostgreSQL database's connection string (skipped without
// PostgreSQL, except in CI).
func startPostgres(t *testing.T) string { return pg.Database(t) }

// testDatabase points cfg at a fresh PostgreSQL database when devpg.EnvTestDatabase asks
// for it (unless it names one already: a restart's).
func testDatabase(t *testing.T, cfg *config.Config) {
	t.Helper()
	if cfg.Database.Type != config.DatabasePostgres && devpg.WantPostgres(t) {
		cfg.Database = config.Database{Type: config.DatabasePostgres, URI: startPostgres(t)}
	}
}

// claimant is an instance on the shared database, as far as claiming it goes.
func claimant(t *testing.T, uri, instanceID string) *Lifecycle {
	t.Helper()
	return claimantIn(t, uri, instanceID, t.TempDir())
}

func claimantIn(t *testing.T, uri, instanceID, dataDir string) *Lifecycle {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = dataDir
	cfg.Database = config.Database{Type: config.DatabasePostgres, URI: uri}
	cfg.Instance.ID = instanceID
	db, err := openDatabase(context.Background(), cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return &Lifecycle{cfg: cfg, log: zerolog.Nop(), db: db, claimTTL: 3 * time.Second, now: time.Now,
		live: map[string]*liveRec{}, ctx: context.Background()}
}

// Instances of a fleet run side by side on a shared database, each holding the lease on
// its own id: a second process with the same instance.id is refused, naming it; after a
// clean stop the id is free at once; after a crash (the lease no longer renewed) the next
// process with that id waits for it to run out and takes over; an instance whose lease
// was taken fails its health check.
func TestOneInstanceClaimsTheDatabase(t *testing.T) {
	ctx := context.Background()
	uri := startPostgres(t)
	a := claimant(t, uri, "rec-a")
	if err := a.claimDatabase(ctx); err != nil {
		t.Fatal(err)
	}
	if a.Instance() != "rec-a" || a.checkClaim(ctx) != nil {
		t.Fatalf("instance %q, health %v", a.Instance(), a.checkClaim(ctx))
	}
	if a.fleet == nil {
		t.Fatal("an instance on PostgreSQL does not share the work")
	}
	if b := claimant(t, uri, "rec-b"); b.claimDatabase(ctx) != nil || b.releaseClaim(ctx) != nil {
		t.Errorf("another instance was refused next to rec-a")
	}
	if err := claimant(t, uri, "rec-a").claimDatabase(ctx); err == nil || !strings.Contains(err.Error(), `instance "rec-a" is running on this database`) {
		t.Errorf("a second rec-a started next to the running one: %v", err)
	}
	// A clean stop gives the claim back.
	if err := a.releaseClaim(ctx); err != nil {
		t.Fatal(err)
	}
	c := claimant(t, uri, "rec-a")
	start := time.Now()
	if err := c.claimDatabase(ctx); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("waited %s for a claim that was given back", time.Since(start))
	}
	// That rec-a dies: its claim stops being renewed (its renewals are cut off here), and is
	// taken over by the next rec-a once it runs out.
	lost := c.keeper
	if _, err := c.db.RenewLease(ctx, storage.InstanceResource("rec-a"), lost.Lease().Owner, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := c.db.Close(); err != nil { // no more renewals
		t.Fatal(err)
	}
	d := claimant(t, uri, "rec-a")
	if err := d.claimDatabase(ctx); err != nil {
		t.Fatalf("taking over from a dead instance: %v", err)
	}
	if l, err := d.db.Lease(ctx, storage.InstanceResource("rec-a")); err != nil || l.Owner != d.keeper.Lease().Owner || l.Generation < 2 {
		t.Errorf("lease after the take-over: %+v %v", l, err)
	}
	// Taken from rec-d behind its back (its renewals did not reach the database in
	// time): its next renewal finds out, and its health check fails from then on.
	for deadline := time.Now().Add(20 * time.Second); ; {
		if _, err := d.db.RenewLease(ctx, storage.InstanceResource("rec-a"), d.keeper.Lease().Owner, time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if l, err := d.db.AcquireLease(ctx, storage.InstanceResource("rec-a"), "intruder/1", time.Minute); err != nil {
			t.Fatal(err)
		} else if l.Held("intruder/1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("could not take the claim from rec-d")
		}
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		err := d.checkClaim(ctx)
		if err != nil {
			if !strings.Contains(err.Error(), "took this instance's id over") {
				t.Errorf("health after the loss: %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("health still passes after the claim was lost")
		}
	}
	if err := d.releaseClaim(ctx); err != nil {
		t.Fatal(err)
	}
	if l, err := d.db.Lease(ctx, storage.InstanceResource("rec-a")); err != nil || l.Owner != "intruder/1" {
		t.Errorf("a lost claim's release touched the new holder's: %+v %v", l, err)
	}
}

// A process that died is followed on the same data_dir (the data_dir lock says the old one
// is gone) by one that takes the claim over at once, without waiting for it to run out; a
// clean stop forgets the claim in data_dir.
func TestRestartOnTheSameDataDirTakesTheClaimAtOnce(t *testing.T) {
	ctx := context.Background()
	uri := startPostgres(t)
	dir := t.TempDir()
	a := claimantIn(t, uri, "", dir) // the id generated and kept in data_dir
	a.claimTTL = time.Hour
	if err := a.claimDatabase(ctx); err != nil {
		t.Fatal(err)
	}
	first := a.keeper.Lease()
	if err := a.db.Close(); err != nil { // it dies: no more renewals, no release
		t.Fatal(err)
	}
	again := claimantIn(t, uri, "", dir)
	again.claimTTL = time.Hour
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := again.claimDatabase(cctx); err != nil {
		t.Fatalf("after %s: %v", time.Since(start), err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %s: it waited for the dead process's claim", took)
	}
	l := again.keeper.Lease()
	if again.Instance() != a.Instance() || l.Owner == first.Owner || !strings.HasPrefix(l.Owner, a.Instance()+"/") || l.Generation != first.Generation+1 {
		t.Errorf("claim after the restart: %+v (before %+v), instance %q and %q", l, first, again.Instance(), a.Instance())
	}
	if err := again.releaseClaim(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, claimFile)); !os.IsNotExist(err) {
		t.Errorf("the claim file outlived a clean stop: %v", err)
	}
}
