package upload

import (
	"os"
	"testing"

	"github.com/matrix-recorder/matrix-recorder/internal/devpg"
)

// pg is the PostgreSQL server of this package's tests when devpg.EnvTestDatabase asks
// for it.
var pg devpg.Shared

func TestMain(m *testing.M) { os.Exit(pg.Run(m)) }
