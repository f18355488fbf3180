//go:build linux

package media

import (
	"os"

	"golang.org/x/sys/unix"
)

func startWriteback(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	// Control holds the descriptor open for the call, so a concurrent Close cannot hand
	// its number to another file meanwhile. Offset and length 0: the whole file.
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SyncFileRange(int(fd), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	})
}
