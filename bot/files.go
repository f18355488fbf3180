package bot

import (
	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/bot/e2ee"
	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/lifecycle"
	"github.com/matrix-recorder/matrix-recorder/storage/datadir"
)

// checkModes warns about what exists with wider permissions than the recorder creates.
func checkModes(log zerolog.Logger, cfg config.Config) {
	files := append([]string{e2ee.CryptoDBName, e2ee.PickleKeyFile, e2ee.RecoveryKeyFile}, lifecycle.StateFiles()...)
	datadir.CheckModes(log, cfg.DataDir, files, cfg.Recordings.Dir, cfg.Recordings.DirMode.Perm())
}
