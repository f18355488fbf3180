//go:build unix

package transcript

import (
	"os/exec"
	"syscall"
)

// ownProcessGroup runs the command in its own process group and makes cancelling kill the
// whole group, so that a hook script's children (an ffmpeg, a model) stop with it.
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
