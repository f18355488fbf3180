package mediacheck

import (
	"os/exec"
	"testing"

	"github.com/matrix-recorder/matrix-recorder/internal/testenv"
)

// Require skips t when one of the tools is missing, naming the Debian
// package to install, or fails it when MATRIX_RECORDER_CI=1. With no
// arguments it requires every tool of this package.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	if len(tools) == 0 {
		tools = []string{FFprobe, FFmpeg, MKVInfoTool, OpusInfoTool, OggzValidate}
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.SkipOrFail(t, "%s not installed (apt-get install %s); scripts/test.sh installs it",
				tool, Packages()[tool])
		}
	}
}
