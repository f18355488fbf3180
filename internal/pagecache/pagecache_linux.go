//go:build linux

package pagecache

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The arguments of cachestat(2) (include/uapi/linux/mman.h).
type cachestatRange struct{ off, len uint64 }

type cachestat struct {
	cache, dirty, writeback, evicted, recentlyEvicted uint64
}

func dirty(f *os.File) (uint64, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var (
		st    unix.Statfs_t
		cs    cachestat
		errno unix.Errno
		serr  error
	)
	whole := cachestatRange{} // len 0: to the end of the file
	cerr := rc.Control(func(fd uintptr) {
		if serr = unix.Fstatfs(int(fd), &st); serr != nil || st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC {
			return
		}
		_, _, errno = unix.Syscall6(unix.SYS_CACHESTAT, fd, uintptr(unsafe.Pointer(&whole)), uintptr(unsafe.Pointer(&cs)), 0, 0, 0)
	})
	switch {
	case cerr != nil:
		return 0, cerr
	case serr != nil:
		return 0, fmt.Errorf("statfs: %w", serr)
	case st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC:
		return 0, ErrUnsupported
	case errors.Is(errno, unix.ENOSYS) || errors.Is(errno, unix.EPERM) || errors.Is(errno, unix.EOPNOTSUPP):
		return 0, ErrUnsupported
	case errno != 0:
		return 0, fmt.Errorf("cachestat: %w", errno)
	}
	return cs.dirty, nil
}
