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

// instanceLeaseTTL is how long an instance's lease on its own id outlives the process
// that stopped renewing it (killed, host gone): until then another process started with
// the same instance.id is refused.
const instanceLeaseTTL = 30 * time.Second

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

// claimDatabase is run at start on a shared (PostgreSQL) database. The instances of a
// fleet run side by side and share the work through leases (fleet.go); each holds the
// lease on its own id (storage.InstanceResource), renewed every third of
// instanceLeaseTTL, so that a second process started with the same instance.id is
// refused, saying so. A process whose predecessor on the same data_dir died takes the
// lease over at once; one that finds the id held by a process elsewhere waits one lease
// period to see whether it is still renewed (it may have died) and is refused if it is.
// The owner is the instance id and a token of this process: it is also the owner of every
// lease this process takes on work.
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
		lc.log.Error().Err(err).Msg("Another process took this instance's id over after this one could not renew its lease: " +
			"this instance must be restarted (/healthz fails)")
	}
	claimPath := filepath.Join(lc.cfg.DataDir, claimFile)
	previous := ""
	if data, err := os.ReadFile(claimPath); err == nil {
		previous = strings.TrimSpace(string(data))
	}
	for attempt := 0; ; attempt++ {
		k, err := lc.db.KeepLease(ctx, storage.InstanceResource(inst), owner, lc.claimTTL, onLost)
		var held *storage.LeaseHeldError
		if errors.As(err, &held) && previous != "" && held.Lease.Owner == previous {
			// This data_dir's previous process: dead, since this one holds the lock.
			l, terr := lc.db.TakeOverLease(ctx, storage.InstanceResource(inst), previous, owner, lc.claimTTL)
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
			lc.fleet = newFleet(lc, owner)
			// The rooms an earlier process of this instance recorded in are this
			// process's to recover (Recover), as after a restart of a single recorder.
			if n, err := lc.db.DropPredecessorLeases(ctx, storage.WatchResource(""), inst+"/", owner); err != nil {
				lc.log.Warn().Err(err).Msg("Could not take back the rooms of this instance's earlier process; the other instances take them over")
			} else if n > 0 {
				lc.log.Info().Int64("rooms", n).Msg("Took back the rooms of this instance's earlier process")
			}
			lc.log.Info().Msg("This instance shares the work with the other instances on the database")
			return nil
		}
		if !errors.As(err, &held) {
			return fmt.Errorf("claim the database: %w", err)
		}
		holder, _, _ := strings.Cut(held.Lease.Owner, "/")
		if attempt > 0 {
			return fmt.Errorf("instance %q is running on this database (its lease is renewed until %s): "+
				"every instance of a fleet needs an instance.id of its own (docs/fleet.md)",
				holder, held.Lease.ExpiresAt.Format(time.RFC3339))
		}
		now, err := lc.db.DatabaseTime(ctx)
		if err != nil {
			return err
		}
		wait := max(held.Lease.ExpiresAt.Sub(now), 0) + time.Second
		lc.log.Warn().Str("holder", holder).Dur("wait", wait).
			Msg("Another process runs with this instance id; waiting to see whether it still renews its lease (it may have died)")
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
		return errors.New("another process took this instance's id over: restart this one")
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
