package mkvwriter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder/media"
	"github.com/matrix-recorder/matrix-recorder/recorder/mkvwriter/mkvscan"
)

var fuzzCodecs = [...]media.Codec{media.CodecVP8, media.CodecVP9, media.CodecAV1, media.CodecH264, media.CodecOpus}

// encodeFuzzFrames packs frames as FuzzWriter reads them: a codec byte, then per frame a
// flags byte (bit 0: key frame), the PTS step in ms (uint16) and a length-prefixed payload.
func encodeFuzzFrames(codec byte, frames []media.Frame) []byte {
	b := []byte{codec}
	prev := time.Duration(0)
	for _, f := range frames {
		flags := byte(0)
		if f.Keyframe {
			flags = 1
		}
		b = append(b, flags)
		b = binary.BigEndian.AppendUint16(b, uint16((f.PTS-prev)/time.Millisecond))
		b = binary.BigEndian.AppendUint16(b, uint16(len(f.Data)))
		b = append(b, f.Data...)
		prev = f.PTS
	}
	return b
}

// FuzzWriter feeds arbitrary frame sequences to the writer: it must never panic, Close must
// succeed on a healthy stream, and the file must hold exactly the frames WriteFrame took.
func FuzzWriter(f *testing.F) {
	for i, name := range []string{"vp8_176x144.ivf", "vp9_176x144.ivf", "av1_176x144.ivf"} {
		frames := readIVF(f, name, fuzzCodecs[i])
		f.Add(encodeFuzzFrames(byte(i), frames[:3]))
	}
	f.Add(encodeFuzzFrames(3, readH264(f, "h264_176x144_high.h264")[:3]))
	f.Add(encodeFuzzFrames(4, []media.Frame{{Data: []byte{0xfc, 1, 2}}, {Data: []byte{0xfc}, PTS: 20 * time.Millisecond}}))
	f.Add([]byte{0, 1, 0xff, 0xff, 0, 10, 0x10, 0, 0, 0x9d, 1, 0x2a, 1, 0, 1, 0})

	f.Fuzz(fuzzWriterOnce)
}

// fuzzWriterOnce runs one FuzzWriter input; the input format is that of encodeFuzzFrames,
// with flags bit 1 stepping the PTS back 5 ms and bit 2 calling Flush after the frame.
func fuzzWriterOnce(t *testing.T, in []byte) {
	if len(in) == 0 {
		return
	}
	codec := fuzzCodecs[int(in[0])%len(fuzzCodecs)]
	in = in[1:]
	m := &memFile{}
	w, err := NewWith(m, mkvCodec(codec), media.TrackParams{}, WithMaxGap(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var accepted []time.Duration
	pts := time.Duration(0)
	for len(in) >= 5 {
		flags := in[0]
		pts += time.Duration(binary.BigEndian.Uint16(in[1:])) * time.Millisecond
		if flags&2 != 0 {
			pts -= 5 * time.Millisecond // sometimes go backwards
		}
		n := min(int(binary.BigEndian.Uint16(in[3:])), len(in)-5)
		data := in[5 : 5+n]
		in = in[5+n:]
		err := w.WriteFrame(media.Frame{Data: data, PTS: pts, Keyframe: flags&1 != 0})
		switch {
		case err == nil:
			accepted = append(accepted, pts)
		case errors.Is(err, ErrBadFrame), errors.Is(err, ErrNotKeyframe), errors.Is(err, ErrBadTimestamp),
			errors.Is(err, media.ErrNewPart):
		default:
			t.Fatalf("unexpected error: %v", err)
		}
		if flags&4 != 0 {
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if len(accepted) == 0 {
		if len(m.b) != 0 {
			t.Fatal("bytes written without a frame")
		}
		return
	}
	var got []int64
	file, err := mkvscan.Scan(bytes.NewReader(m.b), int64(len(m.b)), mkvscan.Visitor{Block: func(b mkvscan.Block) error {
		got = append(got, b.Timestamp)
		return nil
	}})
	if err != nil || file.Torn || file.Skipped != 0 || file.Cues.ID == 0 || file.Duration <= 0 {
		t.Fatalf("scan: %v, %+v", err, file)
	}
	if len(got) != len(accepted) {
		t.Fatalf("%d blocks, %d frames accepted", len(got), len(accepted))
	}
	for i := range got {
		if got[i] != accepted[i].Milliseconds() {
			t.Fatalf("block %d at %d ms, frame at %v", i, got[i], accepted[i])
		}
	}
}

// FuzzRepair repairs arbitrary bytes: no panic, only ErrNotRecoverable as an error, and a
// repaired file reads back whole and counts as finished.
func FuzzRepair(f *testing.F) {
	m := &memFile{}
	w, err := NewWith(m, mkvCodec(media.CodecVP8), media.TrackParams{}, WithClusterDuration(100*time.Millisecond))
	if err != nil {
		f.Fatal(err)
	}
	for i := 0; i < 8; i++ {
		if err := w.WriteFrame(media.Frame{Data: vp8Frame(i%3 == 0, 64, 48, 12), Keyframe: i%3 == 0,
			PTS: time.Duration(i) * 50 * time.Millisecond}); err != nil {
			f.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		f.Fatal(err)
	}
	crashed := bytes.Clone(m.b)
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	f.Add(crashed)
	f.Add(m.b)
	f.Add(crashed[:len(crashed)-7])
	f.Add(append(bytes.Clone(crashed), 0x1f, 0x43, 0xb6, 0x75, 0x01, 0xff))

	f.Fuzz(func(t *testing.T, in []byte) {
		out, report, err := repairBytes(in)
		if err != nil {
			if !errors.Is(err, ErrNotRecoverable) {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		if report.AlreadyFinal {
			return
		}
		blocks := 0
		file, err := mkvscan.Scan(bytes.NewReader(out), int64(len(out)), mkvscan.Visitor{Block: func(mkvscan.Block) error {
			blocks++
			return nil
		}})
		if err != nil || file.Torn || file.Skipped != 0 || blocks != report.Blocks {
			t.Fatalf("repaired file: %v, torn %v, skipped %d, %d blocks, report %+v", err, file.Torn,
				file.Skipped, blocks, report)
		}
		if report.Cues > 0 && report.Blocks > 0 {
			if _, again, err := repairBytes(out); err != nil || !again.AlreadyFinal {
				t.Fatalf("second repair: %+v, %v", again, err)
			}
		}
	})
}

// repairBytes is Repair in memory: the same scan and rewrite without the file system, so
// that fuzzing is not bound by fsync.
func repairBytes(in []byte) ([]byte, RepairReport, error) {
	src := bytes.NewReader(in)
	file, report, err := inspect(src, int64(len(in)))
	if err != nil || report.AlreadyFinal {
		return in, report, err
	}
	out := &memFile{}
	if err := rewrite(src, int64(len(in)), file, out, &report); err != nil {
		return nil, report, err
	}
	return out.b, report, nil
}

// FuzzSPS parses arbitrary SPS NAL units: no panic, and what parses has a sane size and
// makes an avcC.
func FuzzSPS(f *testing.F) {
	f.Add(spsFields{profile: 100, chroma: 1, widthMBs: 120, heightUnits: 34, crop: true, cropB: 2}.encode())
	f.Add(spsFields{profile: 244, chroma: 3, scaling: true, widthMBs: 20, heightUnits: 15, frameMBsOnly: true}.encode())
	f.Add(spsFields{profile: 0, pocType: 1, widthMBs: 40, heightUnits: 23, frameMBsOnly: true}.encode())
	f.Add([]byte{0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10})
	f.Fuzz(func(t *testing.T, nal []byte) {
		s, err := parseSPS(nal)
		if err != nil {
			return
		}
		if s.width <= 0 || s.height <= 0 || s.width > 16*maxMBs || s.height > 32*maxMBs {
			t.Fatalf("size %dx%d", s.width, s.height)
		}
		if _, err := avcConfig(s, [][]byte{nal}, [][]byte{{0x68, 0xce}}); err != nil && len(nal) <= 0xFFFF {
			t.Fatalf("avcC: %v", err)
		}
	})
}
