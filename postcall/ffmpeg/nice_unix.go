//go:build unix

package ffmpeg

import "syscall"

// niceness is the priority ffmpeg runs at: after live recordings, which keep the default.
const niceness = 10

// lowerPriority lowers the scheduling priority of a started process; failing is harmless.
func lowerPriority(pid int) {
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, pid, niceness)
}
