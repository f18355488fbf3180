// Package mkvwriter writes one track of a call to a WebM file (VP8, VP9, AV1, Opus) or a
// Matroska file (H.264), in a way that survives a crash.
//
// While recording the file grows at its end: an unknown-size Segment holds Clusters of
// SimpleBlocks, so a file killed at any moment after Flush decodes every block before that
// point. The only bytes written over are a cluster's size, once the cluster is complete in
// the file (the one being written has an unknown size), so the writer keeps nothing per
// cluster in memory. Close finalises the file in place: Cues (one per cluster with a key
// frame, thinned out to at most 1024 for a long file), Duration, a SeekHead that points at
// both, the largest frame size seen, the size of the last Cluster and of the Segment.
// Repair does the same for a file left behind by a crash, after dropping a torn last
// element.
//
// The header elements (EBML header, SeekHead, Info, Tracks) and the Cues are built with
// ebml-go's marshaller. Clusters and blocks are written by this package, not by ebml-go's
// mkvcore/webm block writers, because those
//   - hand each frame to a goroutine over a channel, so Write returns before the block is
//     written: write errors never reach the caller (they go to a fatal handler that panics
//     by default), and the frame's bytes are read after Write returned, which the
//     media.Frame contract forbids;
//   - allocate for every block (a frame struct and reflection-driven marshalling with a
//     buffer per element), which rules out a zero-allocation hot path;
//   - have no Flush, so there is no point after which a block is known to be in the file;
//   - reserve a fixed space for Cues at the front and thin the cues out when it overflows.
//
// Writing a SimpleBlock by hand is a dozen bytes of header in front of the frame, copied
// through a bufio.Writer: no allocation per frame.
//
// Timestamps use the WebM default TimestampScale of 1 ms. Block timecodes are relative to
// their cluster in an int16, so a cluster ends before it would span more than 32.767 s, at
// the maximum cluster duration (5 s), and on a video key frame once it is a second old.
// Gaps in PTS stay gaps.
//
// Video sizes come from the key frames' bitstream headers (VP8 frame header, VP9
// uncompressed header, AV1 sequence header, H.264 SPS); the Tracks element records the
// largest (by area). VP8, VP9 and AV1 continue across a size change in the same file, as
// their decoders follow in-band changes. H.264's parameter sets live in CodecPrivate, so a
// changed SPS or PPS makes WriteFrame return media.ErrNewPart.
//
// An error of the file underneath (a full disk, an I/O error, a failed fsync) breaks the
// writer for good: every later call returns it, wrapping media.ErrWrite, and Repair saves
// what reached the file.
package mkvwriter
