package mkvwriter

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/at-wat/ebml-go"
	"github.com/at-wat/ebml-go/webm"

	"github.com/matrix-recorder/matrix-recorder/recorder/mkvwriter/mkvscan"
)

// File layout while recording (all appends):
//
//	EBML header
//	Segment, size 01 FF FF FF FF FF FF FF (unknown, 8 bytes so Close can patch it)
//	  header region: SeekHead(Info, Tracks) Info Tracks Void   (regionPad bytes of slack)
//	  Cluster, size known, Timestamp, SimpleBlock...
//	  Cluster ...
//	  Cluster, size unknown (8 bytes), Timestamp, SimpleBlock...   (the one being written)
//
// A cluster starts with an unknown size; when the next one starts, the finished cluster's
// bytes are flushed and its size is patched in. A cluster with a known size is complete in
// the file, so the file is valid at every moment, and nothing per cluster is kept in
// memory. finish appends Cues, patches the last Cluster's size, rewrites the header region
// in place (same length: SeekHead now with Cues, Info with Duration, Tracks with the
// largest size) and patches the Segment size. Each step leaves a valid file, so a crash
// during finish still leaves a playable file that Repair can finalise.
const (
	regionPad        = 128
	clusterHeaderLen = 12 // ID (4) + 8-byte size
	maxBlockPayload  = 1 << 30
)

// unknownSize8 is an 8-byte EBML size field meaning "unknown".
const unknownSize8 uint64 = 0x01FFFFFFFFFFFFFF

// maxCues bounds the cue points a file keeps in memory until it is finalised (24 bytes
// each): when a long recording reaches it, every other cue is dropped and new cues keep
// at least the spacing of those left (cueIndex). A one-hour track with a key frame every
// second ends with cues every 4 s; a player seeks to the cue before the target and decodes
// forward from there.
const maxCues = 1024

// cuePoint is one entry of the Cues, positions relative to the Segment data.
type cuePoint struct {
	time     uint64
	cluster  int64
	relative int64
}

// cueIndex holds the cues of a file, at most maxCues, in time order.
type cueIndex struct {
	points []cuePoint
	// spacing is the least time between two cues kept (0: every cue is kept).
	spacing uint64
}

// add keeps p if it comes at least spacing after the last cue, thinning the index out
// when it is full.
func (c *cueIndex) add(p cuePoint) {
	if n := len(c.points); n > 0 {
		last := c.points[n-1].time
		if p.time < last || p.time-last < c.spacing {
			return
		}
	}
	if len(c.points) >= maxCues {
		c.thin()
		if last := c.points[len(c.points)-1].time; p.time-last < c.spacing {
			return
		}
	}
	c.points = append(c.points, p)
}

// thin keeps every other cue (the first and the last included) and raises the spacing to
// the average spacing of those kept, so that the index fills up again only after as much
// media again as it now covers.
func (c *cueIndex) thin() {
	n := len(c.points)
	j := 0
	for i := 0; i < n; i += 2 {
		c.points[j] = c.points[i]
		j++
	}
	if (n-1)%2 != 0 { // the last one was not kept: keep it instead of the one before
		c.points[j-1] = c.points[n-1]
	}
	c.points = c.points[:j]
	if j > 1 {
		c.spacing = max(c.spacing, (c.points[j-1].time-c.points[0].time)/uint64(j-1))
	}
}

// muxer writes the Matroska structure to a WriteSeeker: the header, clusters and blocks
// appended through a buffer, and the finishing patches. Positions are relative to base,
// where the EBML header starts.
type muxer struct {
	ws   io.WriteSeeker
	bw   *bufio.Writer
	base int64
	pos  int64

	segSizeOff int64 // where the Segment's size field is
	segData    int64 // where the Segment's payload starts
	regionLen  int

	cues        cueIndex
	cueTrack    uint64
	inCluster   bool
	clusterOff  int64 // where the current cluster starts
	clusterTC   int64
	clusterData int64
	clusterCue  bool

	scratch [32]byte
}

func newMuxer(ws io.WriteSeeker, bufSize int) (*muxer, error) {
	base, err := ws.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, fmt.Errorf("finding the start position: %w", err)
	}
	return &muxer{
		ws:       ws,
		bw:       bufio.NewWriterSize(ws, bufSize),
		base:     base,
		cueTrack: 1,
	}, nil
}

func (m *muxer) write(b []byte) error {
	n, err := m.bw.Write(b)
	m.pos += int64(n)
	return err
}

// writeHeader writes the EBML header, opens the Segment and writes the header region.
func (m *muxer) writeHeader(ebmlHeader, info, tracks []byte) error {
	region, err := buildRegion(info, tracks, -1, 0)
	if err != nil {
		return err
	}
	if err := m.write(ebmlHeader); err != nil {
		return err
	}
	b := binary.BigEndian.AppendUint32(m.scratch[:0], mkvscan.IDSegment)
	if err := m.write(b); err != nil {
		return err
	}
	m.segSizeOff = m.pos
	if err := m.write(binary.BigEndian.AppendUint64(m.scratch[:0], unknownSize8)); err != nil {
		return err
	}
	m.segData = m.pos
	m.regionLen = len(region)
	return m.write(region)
}

// startCluster ends the current cluster (endCluster) and opens one of unknown size with
// timestamp tc.
func (m *muxer) startCluster(tc int64) error {
	if m.inCluster {
		if err := m.endCluster(); err != nil {
			return err
		}
	}
	b := m.scratch[:0]
	b = binary.BigEndian.AppendUint32(b, mkvscan.IDCluster)
	b = binary.BigEndian.AppendUint64(b, unknownSize8)
	b = append(b, mkvscan.IDTimestamp)
	b = appendUintElementData(b, uint64(tc))
	off := m.pos
	if err := m.write(b); err != nil {
		return err
	}
	m.inCluster = true
	m.clusterOff = off
	m.clusterTC = tc
	m.clusterData = off + clusterHeaderLen
	m.clusterCue = false
	return nil
}

// endCluster flushes the current cluster and then patches its size: a size is only ever
// written over a cluster whose bytes are all in the file.
func (m *muxer) endCluster() error {
	if err := m.bw.Flush(); err != nil {
		return err
	}
	if err := m.patchSize(m.clusterOff+4, m.pos-m.clusterData); err != nil {
		return fmt.Errorf("patching cluster size: %w", err)
	}
	m.inCluster = false
	return nil
}

// noteBlock records a cue for the first key frame of the cue track in the current cluster;
// call it just before writing the block.
func (m *muxer) noteBlock(track uint64, tc int64, key bool) {
	if key && track == m.cueTrack && !m.clusterCue && tc >= 0 && m.inCluster {
		m.cues.add(cuePoint{
			time:     uint64(tc),
			cluster:  m.clusterOff - m.segData,
			relative: m.pos - m.clusterData,
		})
		m.clusterCue = true
	}
}

// writeSimpleBlock writes a SimpleBlock at absolute timestamp tc, which must lie within the
// int16 range of the current cluster's timestamp.
func (m *muxer) writeSimpleBlock(track uint64, tc int64, key bool, payload []byte) error {
	if len(payload) > maxBlockPayload || track == 0 || track > 126 || !m.inCluster {
		return fmt.Errorf("writing block of %d bytes for track %d: %w", len(payload), track, ErrBadFrame)
	}
	m.noteBlock(track, tc, key)
	b := m.scratch[:0]
	b = append(b, mkvscan.IDSimpleBlock)
	b = appendVint(b, uint64(4+len(payload)))
	b = append(b, 0x80|byte(track))
	b = binary.BigEndian.AppendUint16(b, uint16(int16(tc-m.clusterTC)))
	flags := byte(0)
	if key {
		flags = 0x80
	}
	b = append(b, flags)
	if err := m.write(b); err != nil {
		return err
	}
	return m.write(payload)
}

// flush pushes the buffer to the WriteSeeker.
func (m *muxer) flush() error { return m.bw.Flush() }

// finish finalises the file: Cues, the last cluster's size, the header region (info and
// tracks are the final Info and Tracks elements) and the Segment size. It leaves the
// WriteSeeker at the end of the file.
func (m *muxer) finish(info, tracks []byte) error {
	end := m.pos
	cuesPos := int64(-1)
	if len(m.cues.points) > 0 {
		cues, err := marshalCues(m.cues.points, m.cueTrack)
		if err != nil {
			return err
		}
		cuesPos = end - m.segData
		if err := m.write(cues); err != nil {
			return fmt.Errorf("writing cues: %w", err)
		}
	}
	if err := m.bw.Flush(); err != nil {
		return fmt.Errorf("writing cues: %w", err)
	}
	if m.inCluster {
		if err := m.patchSize(m.clusterOff+4, end-m.clusterData); err != nil {
			return fmt.Errorf("patching cluster size: %w", err)
		}
		m.inCluster = false
	}
	region, err := buildRegion(info, tracks, cuesPos, m.regionLen)
	if err != nil {
		return err
	}
	if err := m.writeAt(m.segData, region); err != nil {
		return fmt.Errorf("rewriting the header: %w", err)
	}
	if err := m.patchSize(m.segSizeOff, m.pos-m.segData); err != nil {
		return fmt.Errorf("patching segment size: %w", err)
	}
	if _, err := m.ws.Seek(m.base+m.pos, io.SeekStart); err != nil {
		return fmt.Errorf("seeking to the end: %w", err)
	}
	return nil
}

// patchSize overwrites an 8-byte size field.
func (m *muxer) patchSize(off, size int64) error {
	if size < 0 || size >= 1<<56-1 {
		return fmt.Errorf("size %d out of range", size)
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(size))
	b[0] = 0x01
	return m.writeAt(off, b[:])
}

// writeAt overwrites bytes already in the file (the buffer must be flushed) and leaves
// the WriteSeeker at the end of what was written so far: with one pwrite where the
// WriteSeeker can (a file), else by seeking there and back.
func (m *muxer) writeAt(off int64, b []byte) error {
	if wa, ok := m.ws.(io.WriterAt); ok {
		_, err := wa.WriteAt(b, m.base+off)
		return err
	}
	if _, err := m.ws.Seek(m.base+off, io.SeekStart); err != nil {
		return err
	}
	if _, err := m.ws.Write(b); err != nil {
		return err
	}
	_, err := m.ws.Seek(m.base+m.pos, io.SeekStart)
	return err
}

// appendVint appends v as an EBML size of the shortest length that is not all ones.
func appendVint(b []byte, v uint64) []byte {
	n := 1
	for n < 8 && v >= uint64(1)<<(7*n)-1 {
		n++
	}
	v |= uint64(1) << (7 * n)
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

// appendUintElementData appends the size and minimal big-endian bytes of an unsigned
// integer element's payload.
func appendUintElementData(b []byte, v uint64) []byte {
	n := 1
	for n < 8 && v>>(8*n) != 0 {
		n++
	}
	b = append(b, 0x80|byte(n))
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

// appendElement appends a whole element with a known size.
func appendElement(b []byte, id uint32, payload []byte) []byte {
	var idb [4]byte
	binary.BigEndian.PutUint32(idb[:], id)
	i := 0
	for i < 3 && idb[i] == 0 {
		i++
	}
	b = append(b, idb[i:]...)
	b = appendVint(b, uint64(len(payload)))
	return append(b, payload...)
}

// appendVoid appends a Void element of exactly n bytes (n >= 2, or 0 for nothing).
func appendVoid(b []byte, n int) []byte {
	switch {
	case n == 0:
		return b
	case n-2 < 127:
		b = append(b, mkvscan.IDVoid, 0x80|byte(n-2))
		return append(b, make([]byte, n-2)...)
	default:
		b = append(b, mkvscan.IDVoid)
		b = appendSize8(b, uint64(n-9))
		return append(b, make([]byte, n-9)...)
	}
}

func appendSize8(b []byte, v uint64) []byte {
	b = append(b, 0x01)
	for i := 6; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

// Structures for ebml-go's marshaller: header, Info, Tracks, SeekHead and Cues are written
// rarely, so reflection costs nothing that matters there.
type ebmlHeaderElement struct {
	Header webm.EBMLHeader `ebml:"EBML"`
}

type infoElement struct {
	TimecodeScale uint64    `ebml:"TimecodeScale"`
	Title         string    `ebml:"Title,omitempty"`
	MuxingApp     string    `ebml:"MuxingApp"`
	WritingApp    string    `ebml:"WritingApp"`
	DateUTC       time.Time `ebml:"DateUTC,omitempty"`
	Duration      float64   `ebml:"Duration,omitempty"`
}

type videoElement struct {
	PixelWidth  uint64 `ebml:"PixelWidth"`
	PixelHeight uint64 `ebml:"PixelHeight"`
}

type audioElement struct {
	SamplingFrequency float64 `ebml:"SamplingFrequency"`
	Channels          uint64  `ebml:"Channels"`
}

type trackEntryElement struct {
	TrackNumber  uint64        `ebml:"TrackNumber"`
	TrackUID     uint64        `ebml:"TrackUID"`
	TrackType    uint64        `ebml:"TrackType"`
	FlagLacing   uint64        `ebml:"FlagLacing"`
	Name         string        `ebml:"Name,omitempty"`
	CodecID      string        `ebml:"CodecID"`
	CodecPrivate []byte        `ebml:"CodecPrivate,omitempty"`
	Video        *videoElement `ebml:"Video"`
	Audio        *audioElement `ebml:"Audio"`
}

type tracksElement struct {
	Tracks struct {
		TrackEntry []trackEntryElement `ebml:"TrackEntry"`
	} `ebml:"Tracks"`
}

type seekElement struct {
	SeekID       []byte `ebml:"SeekID"`
	SeekPosition uint64 `ebml:"SeekPosition"`
}

type seekHeadElement struct {
	SeekHead struct {
		Seek []seekElement `ebml:"Seek"`
	} `ebml:"SeekHead"`
}

type cueTrackPositionsElement struct {
	CueTrack            uint64 `ebml:"CueTrack"`
	CueClusterPosition  uint64 `ebml:"CueClusterPosition"`
	CueRelativePosition uint64 `ebml:"CueRelativePosition"`
}

type cuePointElement struct {
	CueTime           uint64                   `ebml:"CueTime"`
	CueTrackPositions cueTrackPositionsElement `ebml:"CueTrackPositions"`
}

type cuesElement struct {
	Cues struct {
		CuePoint []cuePointElement `ebml:"CuePoint"`
	} `ebml:"Cues"`
}

func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := ebml.Marshal(v, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func marshalEBMLHeader(docType string) ([]byte, error) {
	h := ebmlHeaderElement{Header: webm.EBMLHeader{
		EBMLVersion:        1,
		EBMLReadVersion:    1,
		EBMLMaxIDLength:    4,
		EBMLMaxSizeLength:  8,
		DocType:            docType,
		DocTypeVersion:     4,
		DocTypeReadVersion: 2,
	}}
	b, err := marshal(&h)
	if err != nil {
		return nil, fmt.Errorf("marshalling ebml header: %w", err)
	}
	return b, nil
}

func marshalCues(points []cuePoint, track uint64) ([]byte, error) {
	var c cuesElement
	c.Cues.CuePoint = make([]cuePointElement, len(points))
	for i, p := range points {
		c.Cues.CuePoint[i] = cuePointElement{
			CueTime: p.time,
			CueTrackPositions: cueTrackPositionsElement{
				CueTrack:            track,
				CueClusterPosition:  uint64(p.cluster),
				CueRelativePosition: uint64(p.relative),
			},
		}
	}
	b, err := marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("marshalling cues: %w", err)
	}
	return b, nil
}

var errRegionTooSmall = errors.New("header region too small")

// buildRegion lays out SeekHead, Info and Tracks (with a Cues entry when cuesPos >= 0) and
// pads the result with a Void to size bytes; size 0 means "as needed plus regionPad".
func buildRegion(info, tracks []byte, cuesPos int64, size int) ([]byte, error) {
	shLen := 0
	var sh []byte
	for range 4 {
		var s seekHeadElement
		s.SeekHead.Seek = []seekElement{
			{SeekID: ebml.ElementInfo.Bytes(), SeekPosition: uint64(shLen)},
			{SeekID: ebml.ElementTracks.Bytes(), SeekPosition: uint64(shLen + len(info))},
		}
		if cuesPos >= 0 {
			s.SeekHead.Seek = append(s.SeekHead.Seek, seekElement{
				SeekID: ebml.ElementCues.Bytes(), SeekPosition: uint64(cuesPos),
			})
		}
		var err error
		sh, err = marshal(&s)
		if err != nil {
			return nil, fmt.Errorf("marshalling seek head: %w", err)
		}
		if len(sh) == shLen {
			break
		}
		shLen = len(sh)
	}
	if len(sh) != shLen {
		return nil, fmt.Errorf("laying out seek head: size does not settle")
	}
	out := make([]byte, 0, max(size, len(sh)+len(info)+len(tracks)+regionPad))
	out = append(out, sh...)
	out = append(out, info...)
	out = append(out, tracks...)
	if size == 0 {
		size = len(out) + regionPad
	}
	pad := size - len(out)
	if pad < 0 || pad == 1 {
		return nil, fmt.Errorf("laying out %d header bytes in %d: %w", len(out), size, errRegionTooSmall)
	}
	return appendVoid(out, pad), nil
}

// durationMS converts a PTS to a Matroska Duration in milliseconds.
func durationMS(d time.Duration) float64 {
	return float64(d) / float64(time.Millisecond)
}

// clampAdd adds without overflowing.
func clampAdd(a, b time.Duration) time.Duration {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
