package mkvwriter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder/mkvwriter/mkvscan"
)

// RepairReport says what Repair found and did.
type RepairReport struct {
	// Duration of the repaired file.
	Duration time.Duration
	// Clusters and Blocks kept; Cues written (one per cluster with a key frame, thinned out
	// to at most maxCues for a long file).
	Clusters, Blocks, Cues int
	// Dropped is true when a torn tail or unreadable bytes were left out; DroppedBytes
	// counts them.
	Dropped      bool
	DroppedBytes int64
	// AlreadyFinal is true when the file was complete (closed cleanly) and left untouched.
	AlreadyFinal bool
}

// Repair finalises a file left behind by a crash: it keeps every complete block, drops a
// torn last element and any unreadable bytes, and writes Duration, Cues, SeekHead and sizes.
// The result replaces the file atomically (a temporary file in the same directory, fsynced,
// then renamed over it). Files that Close finished are left alone. It works for any
// Matroska or WebM file whose Info and Tracks survived, not only for this package's.
func Repair(path string) (RepairReport, error) {
	src, err := os.Open(path)
	if err != nil {
		return RepairReport{}, fmt.Errorf("repairing: %w", err)
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return RepairReport{}, fmt.Errorf("repairing %s: %w", path, err)
	}
	size := st.Size()

	file, report, err := inspect(src, size)
	if err != nil || report.AlreadyFinal {
		if err != nil {
			err = fmt.Errorf("repairing %s: %w", path, err)
		}
		return report, err
	}

	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".repair-*")
	if err != nil {
		return RepairReport{}, fmt.Errorf("repairing %s: %w", path, err)
	}
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(st.Mode().Perm()); err != nil {
		return RepairReport{}, fmt.Errorf("repairing %s: %w", path, err)
	}
	if err := rewrite(src, size, file, tmp, &report); err != nil {
		return RepairReport{}, fmt.Errorf("repairing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return RepairReport{}, fmt.Errorf("repairing %s: syncing: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return RepairReport{}, fmt.Errorf("repairing %s: closing: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return RepairReport{}, fmt.Errorf("repairing %s: %w", path, err)
	}
	done = true
	if err := syncDir(filepath.Dir(path)); err != nil {
		return report, fmt.Errorf("repairing %s: %w", path, err)
	}
	return report, nil
}

// inspect scans a file and says whether it needs a rewrite: not when Close finished it.
func inspect(src io.ReaderAt, size int64) (*mkvscan.File, RepairReport, error) {
	file, err := mkvscan.Scan(src, size, mkvscan.Visitor{})
	if err != nil {
		if errors.Is(err, mkvscan.ErrNotMatroska) {
			err = errors.Join(ErrNotRecoverable, err)
		}
		return nil, RepairReport{}, fmt.Errorf("scanning: %w", err)
	}
	if file.Info.ID == 0 || file.Tracks.ID == 0 || len(file.TrackList) == 0 {
		return nil, RepairReport{}, fmt.Errorf("no info or tracks: %w", ErrNotRecoverable)
	}
	report := RepairReport{Dropped: file.Torn || file.Skipped > 0, DroppedBytes: file.Skipped}
	if file.Torn {
		report.DroppedBytes += size - file.End
	}
	if !report.Dropped && file.Cues.ID != 0 && file.Duration > 0 &&
		file.Segment.Size != mkvscan.UnknownSize && file.Segment.End() == size {
		report.AlreadyFinal = true
		report.Clusters, report.Blocks = file.Clusters, file.Blocks
		report.Duration = time.Duration(file.Duration * float64(file.TimestampScale))
	}
	return file, report, nil
}

// rewrite copies the header and every complete block of src into dst through a muxer and
// finalises dst.
func rewrite(src io.ReaderAt, size int64, file *mkvscan.File, dst io.WriteSeeker, report *RepairReport) error {
	ebmlHeader, err := readRange(src, 0, file.EBMLHeader.End())
	if err != nil {
		return fmt.Errorf("reading ebml header: %w", err)
	}
	infoPayload, err := mkvscan.ReadPayload(src, file.Info, maxHeaderBytes)
	if err != nil {
		return fmt.Errorf("reading info: %w", err)
	}
	// Keep the Info children that parse (a damaged tail of Info costs its own fields, not the
	// blocks) except Duration, which is written anew, and Void and CRC-32, which would be wrong.
	infoChildren := make([]byte, 0, len(infoPayload))
	_ = mkvscan.Children(infoPayload, func(id uint32, data []byte) {
		if id != mkvscan.IDDuration && id != mkvscan.IDVoid && id != mkvscan.IDCRC32 {
			infoChildren = appendElement(infoChildren, id, data)
		}
	})
	tracks, err := readRange(src, file.Tracks.Offset, file.Tracks.End())
	if err != nil {
		return fmt.Errorf("reading tracks: %w", err)
	}

	m, err := newMuxer(dst, 256<<10)
	if err != nil {
		return err
	}
	m.cueTrack = file.TrackList[0].Number
	for _, t := range file.TrackList {
		if t.Type == 1 {
			m.cueTrack = t.Number
			break
		}
	}
	if err := m.writeHeader(ebmlHeader, appendElement(nil, mkvscan.IDInfo, infoChildren), tracks); err != nil {
		return fmt.Errorf("writing header: %w", err)
	}

	// Copy blocks as they are, each cluster opened again at its original timestamp so that
	// the relative block timecodes stay right. Clusters without blocks are left out.
	second := math.MaxFloat64
	if file.TimestampScale > 0 {
		second = float64(time.Second) / float64(file.TimestampScale)
	}
	var (
		pendingTC          int64
		pending            bool
		buf                []byte
		lastTS, interval   int64
		end, maxTS         int64
		haveCueTrackBlocks bool
	)
	_, err = mkvscan.Scan(src, size, mkvscan.Visitor{
		Cluster: func(c mkvscan.Cluster) error {
			pendingTC, pending = int64(min(c.Timestamp, math.MaxInt64/2)), true
			return nil
		},
		Block: func(b mkvscan.Block) error {
			if pending {
				if err := m.startCluster(pendingTC); err != nil {
					return fmt.Errorf("writing cluster: %w", err)
				}
				pending = false
				report.Clusters++
			}
			if cap(buf) < int(b.Size) {
				buf = make([]byte, b.Size)
			}
			buf = buf[:b.Size]
			if n, err := src.ReadAt(buf, b.Offset); n < len(buf) {
				return fmt.Errorf("reading block at %d: %w", b.Offset, errors.Join(io.ErrUnexpectedEOF, err))
			}
			m.noteBlock(b.Track, b.Timestamp, b.Keyframe)
			if err := m.write(buf); err != nil {
				return fmt.Errorf("writing block: %w", err)
			}
			report.Blocks++
			if b.Duration > 0 {
				end = max(end, b.Timestamp+b.Duration)
			}
			if b.Track == m.cueTrack {
				if haveCueTrackBlocks {
					if d := b.Timestamp - lastTS; d > 0 && float64(d) <= second {
						interval = d
					}
				}
				lastTS, haveCueTrackBlocks = max(lastTS, b.Timestamp), true
			}
			maxTS = max(maxTS, b.Timestamp)
			return nil
		},
	})
	if err != nil {
		return fmt.Errorf("copying blocks: %w", err)
	}
	if haveCueTrackBlocks {
		end = max(end, lastTS+interval)
	}
	if report.Blocks > 0 {
		// Duration must be positive; with no frame interval to go by, one tick past the last block.
		end = max(end, maxTS+1)
	}
	report.Cues = len(m.cues.points)
	report.Duration = time.Duration(float64(end) * float64(file.TimestampScale))

	info := appendElement(nil, mkvscan.IDInfo, appendDuration(infoChildren, float64(end)))
	if err := m.finish(info, tracks); err != nil {
		return fmt.Errorf("finalising: %w", err)
	}
	return nil
}

// maxHeaderBytes bounds the Info element Repair reads into memory.
const maxHeaderBytes = 4 << 20

func appendDuration(b []byte, d float64) []byte {
	if d <= 0 {
		return b
	}
	var f [8]byte
	binary.BigEndian.PutUint64(f[:], math.Float64bits(d))
	return appendElement(b, mkvscan.IDDuration, f[:])
}

func readRange(r io.ReaderAt, from, to int64) ([]byte, error) {
	if from < 0 || to < from || to-from > maxHeaderBytes {
		return nil, fmt.Errorf("range %d-%d: %w", from, to, ErrNotRecoverable)
	}
	b := make([]byte, to-from)
	if n, err := r.ReadAt(b, from); n < len(b) {
		return nil, errors.Join(io.ErrUnexpectedEOF, err)
	}
	return b, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing directory: %w", err)
	}
	return errors.Join(d.Sync(), d.Close())
}
