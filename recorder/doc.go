// Package recorder turns RTP tracks into files: one folder per call with one file per
// track part, all placed on the call's timeline, and a manifest that says who each file is.
//
// # One way in
//
// Media enters through a TrackSource (source.go): a track's packets, its sender's RTCP
// sender reports, key frame requests back to the sender, and its end. Each call backend
// adapts its tracks to it (call/rtc for pion's remote tracks in 1:1 calls and full mesh,
// call/livekit for tracks subscribed on a LiveKit SFU) and hands it to Track.Run, which
// reads it on one goroutine and processes every packet there as it is read, into one
// reused buffer: reorder buffer (recorder/jitter), frames (recorder/depacketize, and a
// FrameDecrypter for MatrixRTC's media encryption), timeline, container writer. What the
// pipeline does by codec comes from the codec table, recorder/codec.
//
// # One timeline
//
// The call's timeline starts when the session starts (manifest started_at). Every file
// (one part of one logical track) starts with its first sample, and start_offset_ms says
// where that sample sits on the timeline. Inside a file, time is the sender's RTP time,
// never a packet count, so silence, mute and loss keep their length.
//
// A part's offset is the local time at which its first sample would have arrived over
// the sender's fastest path to us:
//
//   - With RTCP sender reports: a report maps an RTP timestamp to the sender's NTP
//     clock. The sender's clock is mapped to ours by the least (arrival - NTP) among its
//     reports (a sliding minimum over 30 to 60 s, so it follows clock drift): the report
//     that waited least in queues. Tracks that share a clock domain (TrackInfo.ClockDomain:
//     one peer connection, one LiveKit participant) share that mapping, so the audio and
//     video of one sender line up as the sender captured them (RFC 3550 §6.4.1), even
//     when only one of them has had a report.
//   - Before the first report: the least-delayed packet, min(arrival - PTS) over the
//     part's frames. A queue that delivers the first second of a track in a late burst,
//     the reorder buffer holding packets back, or retransmissions do not move the track:
//     only the packet that waited least counts.
//
// The offset is refined from both as they improve during the part's first 30 s.
//
// Why tracks of different participants line up within ±20 ms: both methods place a
// sample at (time it was sent + least one-way delay from that sender to the recorder).
// Two people who click at the same moment therefore land on the timeline apart by the
// difference of their least network delays, which is what a listener in the call heard
// and stays within a few milliseconds for senders on one continent or behind one SFU;
// jitter, queueing and loss do not add to it (TestTimelineTwoSenders: two senders with
// different clocks, delays, jitter and a slow start land 15 ms apart, their delay
// difference). A sender much further away (say 150 ms more one-way) lands that much later,
// exactly as it was heard live. Within a long part, time is the sender's RTP clock: a
// sender whose sound card runs 20 ppm fast drifts 72 ms over an hour against the
// timeline. The recorder measures that drift for every part over two minutes and writes
// it in the manifest (clock_drift_ppm, drift.go) rather than resampling media; a new part
// starts at its true offset again.
//
// A frame whose timestamp does not fit the part's timeline (it goes back, or arrives more
// than a second early or 5 s late for its timestamp) is held until three in a row agree
// on a new timeline; then the track continues in a new part (timeline.go). One stray
// packet cannot split a file or shift what follows.
//
// # Limits
//
// A sender decides how often its timeline jumps, so parts are bounded (limits.go): a
// track opens parts for jumps from a token bucket (3 at once, one more every 20 s) and
// follows further jumps in the same file at arrival time (counted in timeline_jumps, one
// warning); every file counts against its participant and the call, and a participant's
// share is below the call's, so one sender never takes the files everybody else needs.
//
// # Gaps
//
// A gap (DTX, mute, loss) keeps its length. gap_policy keep writes gaps over 120 ms as
// Opus digital silence and leaves shorter ones (loss) to the decoder's concealment; fill
// writes silence for every gap; split starts a new part after split_after of nothing.
// Video gaps stay gaps in the block timestamps. Each gap is listed in the manifest.
//
// # Crash safety
//
// Files are append-only and playable at every moment. Every track flushes its writer at
// least every Options.FlushInterval (the recovery point), and a part is fsynced when it
// closes. The manifest is rewritten atomically when the call's structure changes (fsynced;
// changes that come fast are written together, each within the flush interval) and every
// few seconds with fresh durations and counters (not fsynced: recovery recomputes those
// from the files). RecoverInterrupted repairs folders a crash left behind.
//
// # Write errors
//
// A file that cannot be written (a full disk, an I/O error) ends its part; the track goes
// on reading, tries again with growing waits, repairs the broken file once the folder
// takes writes again and continues in a new part (writefail.go). The manifest, the log
// and Hooks.OnWriteError / OnWriteResumed say so.
package recorder
