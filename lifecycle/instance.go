package lifecycle

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/storage"
	"github.com/matrix-recorder/matrix-recorder/storage/datadir"
)

// activeLeaseTTL is how long a PostgreSQL database stays claimed by an instance that
// stopped renewing (killed, host gone) before another may start on it.
const activeLeaseTTL = 30 * time.Second

// openDatabase opens the state database database.type names.
func openDatabase(ctx context.Context, cfg config.Config, log zerolog.Logger) (*storage.DB, error) {
	sc := storage.Config{Engine: storage.SQLite, Path: filepath.Join(cfg.DataDir, storage.FileName), Log: &log}
	if cfg.Database.Type == config.DatabasePostgres {
		sc = storage.Config{Engine: storage.Postgres, URI: cfg.Database.URI, Log: &log}
	}
	return storage.OpenConfig(ctx, sc)
}

// claimFile in data_dir names the claim this data_dir's process holds on a shared
// database, so that the next process on the same data_dir (which the data_dir lock says is
// alone on it) takes the claim of a predecessor that died at once, without waiting for it
// to run out.
const claimFile = "database-claim"

// claimDatabase is run at start on a shared (PostgreSQL) database. Until the instances
// of a fleet share the work (docs/fleet.md), one instance at a time records on a
// database: it holds the database's active-instance lease, renewed every third of
// activeLeaseTTL. Another instance that starts meanwhile is refused, saying which one
// runs; one whose predecessor died (the lease stopped being renewed) waits for the lease
// to run out and takes over, at once when the predecessor ran on the same data_dir. The
// owner is the instance id and a token of this process, so that two processes configured
// with the same instance.id cannot both hold it.
func (lc *Lifecycle) claimDatabase(ctx context.Context) error {
	if !lc.cfg.Database.Fleet() {
		return nil
	}
	inst, err := datadir.InstanceID(lc.cfg.DataDir, lc.cfg.Instance.ID)
	if err != nil {
		return err
	}
	token := make([]byte, 4)
	_, _ = rand.Read(token)
	lc.instance = inst
	owner := inst + "/" + hex.EncodeToString(token)
	lc.log = lc.log.With().Str("instance", inst).Logger()
	onLost := func(err error) {
		lc.log.Error().Err(err).Msg("Another instance took over the database after this one could not renew its claim: " +
			"this instance must be restarted (/healthz fails)")
	}
	claimPath := filepath.Join(lc.cfg.DataDir, claimFile)
	previous := ""
	if data, err := os.ReadFile(claimPath); err == nil {
		previous = strings.TrimSpace(string(data))
	}
	for attempt := 0; ; attempt++ {
		k, err := lc.db.KeepLease(ctx, storage.ActiveInstanceResource, owner, lc.claimTTL, onLost)
		var held *storage.LeaseHeldError
		if errors.As(err, &held) && previous != "" && held.Lease.Owner == previous {
			// This data_dir's previous process: dead, since this one holds the lock.
			l, terr := lc.db.TakeOverLease(ctx, storage.ActiveInstanceResource, previous, owner, lc.claimTTL)
			if terr == nil {
				k, err = lc.db.KeepHeldLease(ctx, l, lc.claimTTL, onLost), nil
				lc.log.Info().Msg("Took the database's claim over from this data_dir's previous process")
			} else if !errors.Is(terr, storage.ErrNotFound) {
				return fmt.Errorf("claim the database: %w", terr)
			}
		}
		if err == nil {
			lc.keeper = k
			if werr := datadir.WriteSecret(claimPath, []byte(owner+"\n")); werr != nil {
				lc.log.Warn().Err(werr).Msg("Could not note the database's claim in data_dir; a restart after a crash waits for it to run out")
			}
			lc.log.Info().Msg("This instance records on the shared database")
			return nil
		}
		if !errors.As(err, &held) {
			return fmt.Errorf("claim the database: %w", err)
		}
		holder, _, _ := strings.Cut(held.Lease.Owner, "/")
		if attempt > 0 {
			return fmt.Errorf("instance %q is running on this database (its claim is renewed until %s): "+
				"one instance records on a database at a time in this release; stop it first, or give this one a database of its own (docs/fleet.md)",
				holder, held.Lease.ExpiresAt.Format(time.RFC3339))
		}
		now, err := lc.db.DatabaseTime(ctx)
		if err != nil {
			return err
		}
		wait := max(held.Lease.ExpiresAt.Sub(now), 0) + time.Second
		lc.log.Warn().Str("holder", holder).Dur("wait", wait).
			Msg("Another instance holds the database; waiting to see whether it still renews its claim (it may have died)")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// checkClaim fails once the database's claim was lost (health).
func (lc *Lifecycle) checkClaim(ctx context.Context) error {
	if err := lc.db.Ping(ctx); err != nil {
		return err
	}
	if lc.keeper == nil {
		return nil
	}
	if err := lc.keeper.Err(); errors.Is(err, storage.ErrLeaseLost) {
		return errors.New("another instance took over the database: restart this one")
	}
	return nil
}

// releaseClaim gives the database's claim back at a clean stop, so the next instance
// starts at once.
func (lc *Lifecycle) releaseClaim(ctx context.Context) error {
	if lc.keeper == nil {
		return nil
	}
	if err := lc.keeper.Release(ctx); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(lc.cfg.DataDir, claimFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("forget the database's claim: %w", err)
	}
	return nil
}

// Instance is this instance's id on a shared database ("" with SQLite).
func (lc *Lifecycle) Instance() string { return lc.instance }
