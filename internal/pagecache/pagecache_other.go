//go:build !linux

package pagecache

import "os"

func dirty(*os.File) (uint64, error) { return 0, ErrUnsupported }
