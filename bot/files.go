package bot

import (
	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/lifecycle"
	"github.com/matrix-recorder/matrix-recorder/storage/datadir"
)

// cryptoDBName is mautrix's crypto store in data_dir.
const cryptoDBName = "crypto.db"

// checkModes warns about what exists with wider permissions than the recorder creates.
func checkModes(log zerolog.Logger, cfg config.Config) {
	files := append([]string{cryptoDBName, pickleKeyFile, recoveryKeyFile}, lifecycle.StateFiles()...)
	datadir.CheckModes(log, cfg.DataDir, files, cfg.Recordings.Dir, cfg.Recordings.DirMode.Perm())
}
