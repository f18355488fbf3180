// Package oggwriter writes the Opus frames of one track into an Ogg Opus file
// (RFC 7845 on RFC 3533), append-only and playable after every Flush.
//
// # Timeline
//
// A packet's granule position is where it ends on the file's timeline: its PTS plus its
// duration (from the packet's TOC, RFC 6716 §3.1), in 48 kHz samples, plus the pre-skip.
// Nothing is counted, so the timeline is the frames' PTS even when packets are missing.
// The pre-skip defaults to 0, which makes the file's timeline exactly the PTS timeline;
// opusinfo then warns "Implausibly low preskip", a heuristic for encoder output (and
// the only warning it gives for files without gaps in their granule positions). With a pre-skip p, PTS still maps to the
// RFC's PCM timeline (granule position minus p), and players drop the first p samples
// of it, so the stream starts at p (ffprobe's start_time); opusfile refuses a stream
// shorter than its pre-skip.
//
// # Gaps
//
// A frame that starts after the previous one ends leaves a gap (DTX, a muted
// microphone, lost packets). GapPolicy chooses what the writer puts there. Checked with
// ffmpeg/ffprobe 5.1 (its own Ogg demuxer and Opus decoder), opus-tools 0.2 (opusinfo;
// opusdec on libopusfile 0.12 and libopus 1.3.1) and oggz-validate 1.1.1, on 3.02 s of
// packets with the second second missing (TestFFmpegGapFinding):
//
//   - GapKeep (the default for now): the gap shows only as a jump in granule positions.
//     ffprobe reports the true duration, 3.02 s, but `ffmpeg -i f.ogg out.wav` writes a
//     WAV of 2.02 s: ffmpeg decodes the packets one after the other and the gap
//     collapses. opusdec does the same (2.02 s), and opusinfo warns "Sample count
//     behind granule". `ffmpeg -af aresample=async=1` puts a gap in the middle back
//     (3.02 s) but not a gap before the first frame: a file whose first frame is at
//     2 s has ffprobe start_time 2 s and still decodes from its first frame. RFC 7845 §4
//     in fact allows no gaps (a page's granule position must be the previous one plus
//     the samples that end on it) and §4.1 asks muxers to fill them. So a track with a
//     pause, pulled into a DAW, comes out shorter than the call and out of sync.
//   - GapSilence: the gap is filled with packets that decode to digital silence
//     (opus.Silence; 20 ms each, what is left in 10, 5 and 2.5 ms ones; a rest under
//     2.5 ms stays a jump). Every tool reports and decodes the full 3.02 s, also with a
//     gap before the first frame, and both decoders output exact zeros in the gap
//     (opusdec with --no-dither; its default dither adds about ±9 of 32767) after the
//     2.5 ms in which the last real frame fades out. A 6-hour gap costs about 4.4 MB
//     and 25 ms.
//   - GapConceal: the gap is filled with packets of empty frames, which ask the decoder
//     for loss concealment (what RFC 7845 §4.1 suggests). Full length everywhere too,
//     but the audio depends on the decoder: ffmpeg outputs silence, libopus kept the
//     tone going at about a quarter of its level through the whole second.
//
// For per-speaker podcast tracks GapSilence is the policy that keeps every file as long
// as the call in every tool; the pipeline can get the same by writing opus.Silence
// packets itself.
//
// # Pages and crash safety
//
// Packets are buffered and a page is written when the next packet would take it past
// WithMaxPageBody bytes, WithMaxPagePackets packets or 255 segments, or on Flush. A
// packet longer than a page's segment table continues on the next pages (continued-packet
// flag; granule position -1 on pages where no packet ends). Every page goes to the file
// in one write, so after Flush the file ends on a page boundary and plays up to the last
// frame written; a crash loses only what came after the last Flush. WithSyncOnFlush
// makes that hold through a power loss too.
//
// Close writes the last page with the end-of-stream flag. If nothing is buffered, that
// page carries one short silence packet and the previous granule position, so players
// trim the packet away (RFC 7845 §4.5): oggz-validate refuses an end-of-stream page with
// no packet on it, and opusinfo warns about one with a granule position. A stream with
// less audio than its pre-skip (a single 2.5 ms packet) is padded with silence up to its
// start plus the pre-skip, or opusfile refuses to open it (its last granule position
// must lie at least the pre-skip after its start); it plays as nothing, since all of it
// lies in the pre-skip that players drop. Repair mends a
// file a crash left: it cuts a torn last page, keeps every complete page and appends
// such an end page.
//
// # Bad frames
//
// WriteFrame refuses a frame that is not a valid Opus packet (ErrInvalidPacket), starts
// before the previous frame ends or before the file starts (ErrBackwards), or starts
// more than WithMaxGap after the previous frame ends, six hours by default
// (ErrGapTooLarge: a broken clock rather than a pause). The frame is dropped and the
// writer carries on; the caller counts the error. A write error of the underlying file,
// on the other hand, is final: the stream's end is unknown, and every later call
// returns it, wrapping media.ErrWrite (so does a failed fsync, after which the kernel may
// have dropped what it could not write). Repair saves what reached the file.
package oggwriter
