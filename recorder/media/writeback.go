package media

import "os"

// StartWriteback asks the kernel to start writing f's dirty pages to disk now and
// returns without waiting for them (Linux: sync_file_range with SYNC_FILE_RANGE_WRITE;
// elsewhere it does nothing). It is a hint, not a sync: it makes nothing durable and
// reports nothing, since an error of that writing is reported by the next fsync of the
// file (which the writers do when they close it).
//
// The writers call it at every flush of a file they own when they do not fsync there
// (recordings.fsync off). Otherwise the kernel keeps a file's pages dirty for up to
// 30 s (vm.dirty_expire_centisecs), and the fsync that finalises the file when its call
// ends writes all of them then: when many calls end at once, up to 30 s of each one's
// media goes to the disk in one go, and every call waits for all of it (BENCHMARKS.md,
// issue 16). With the hint, what is left for that fsync is about one flush interval of
// media per file, and the disk writes the recordings as they come rather than in bursts.
func StartWriteback(f *os.File) {
	if f == nil {
		return
	}
	startWriteback(f)
}
