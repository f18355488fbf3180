package storage

import (
	"context"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
)

// slowQuery is how long a statement takes before it is logged.
const slowQuery = time.Second

// dbLog tells the operator about schema upgrades and slow statements. Unlike dbutil's
// zerolog adapter it never logs a statement's arguments (download tokens, S3 upload ids).
type dbLog struct{ log zerolog.Logger }

var _ dbutil.DatabaseLogger = dbLog{}

func (l dbLog) QueryTiming(_ context.Context, method, query string, _ []any, _ int, d time.Duration, err error) {
	if d < slowQuery {
		return
	}
	l.log.Warn().Dur("duration", d).AnErr("result_error", err).Str("method", method).
		Str("query", strings.Join(strings.Fields(query), " ")).Msg("A state database statement took long")
}

func (l dbLog) WarnUnsupportedVersion(current, compat, latest int) {
	l.log.Warn().Int("version", current).Int("compatible_with", compat).Int("known", latest).Msg("The state database's schema is newer than this release")
}

func (l dbLog) PrepareUpgrade(current, _, latest int) {
	if current < latest {
		l.log.Info().Int("version", current).Int("latest", latest).Msg("Upgrading the state database's schema")
	}
}

func (l dbLog) DoUpgrade(from, to int, message string, _ dbutil.TxnMode) {
	l.log.Info().Int("from", from).Int("to", to).Str("upgrade", message).Msg("Applying a state database migration")
}

func (l dbLog) Warn(msg string, args ...any) {
	l.log.Warn().Int("args", len(args)).Msg(msg)
}
