// Package upload copies recording files to object storage while they are being written:
// each file is followed as it grows and sent part by part (multipart upload), so that when
// the call ends only the last part and the bytes rewritten by finalisation are left to
// send, and a lost host loses at most what was not sent yet. Progress is kept in the state
// database, so a restart continues where the last run stopped.
//
// Correctness does not depend on knowing the container format: when a file is final, every
// part already sent is compared (MD5) with the final bytes and sent again if finalisation
// rewrote it (WebM and Matroska headers and cluster sizes are patched at Close; S3 lets a
// part number be replaced until the upload is completed). The object is then checked
// against the file (size and the multipart ETag computed from the parts' MD5s) before the
// copy counts as confirmed.
package upload

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/recorder/codec"
	"github.com/matrix-recorder/matrix-recorder/storage"
	"github.com/matrix-recorder/matrix-recorder/storage/s3store"
)

// Store is what the uploader needs from object storage (s3store.Store implements it).
type Store interface {
	Bucket() string
	Key(folder, file string) string
	NewMultipart(ctx context.Context, key string) (string, error)
	PutPart(ctx context.Context, key, uploadID string, number int, data, md5sum []byte) (string, error)
	Complete(ctx context.Context, key, uploadID string, parts []s3store.Part) (string, error)
	Abort(ctx context.Context, key, uploadID string) error
	Put(ctx context.Context, key string, data []byte) (string, error)
	Head(ctx context.Context, key string) (s3store.Object, error)
	// Get, List and Remove serve the tails of growing files (tail.go, salvage.go).
	Get(ctx context.Context, key string, max int64) ([]byte, error)
	List(ctx context.Context, prefix string) ([]string, error)
	Remove(ctx context.Context, keys []string) error
}

// S3 limits.
const (
	MinPartSize = 5 << 20
	MaxParts    = 10000
)

// Options configure an Uploader.
type Options struct {
	// Dir is the recordings root (call folders are in it).
	Dir string
	// PartSize is the size of every part but the last (at least MinPartSize).
	PartSize int64
	// Poll is how often a growing file is looked at.
	Poll time.Duration
	// Concurrency bounds parts in flight (and their buffers) across all files.
	Concurrency int
	// MinBackoff and MaxBackoff bound the wait between failed attempts.
	MinBackoff, MaxBackoff time.Duration
	// OnConfirmed is called (from the file's goroutine) once a file's copy is confirmed.
	// Confirmations are serialised: OnEvidence for the same copy comes after it.
	OnConfirmed func(u *storage.Upload)
	// OnEvidence is called when the store's notification confirms a copy that was
	// confirmed by reading it back already (its ConfirmedBy says both now).
	OnEvidence func(u *storage.Upload)
	// EvidenceWait is how long WaitEvidence waits for the notification of a copy another
	// program uploaded (0: it does not wait; set it when notifications reach the recorder).
	EvidenceWait time.Duration
	// OnFailure is called for every failed attempt.
	OnFailure func(u *storage.Upload, err error)
	// OnSent is called with the size of every part sent.
	OnSent func(n int64)
	// TailEvery, when set (a fleet), is how often the tail of a growing file, the bytes
	// past its last whole part, is stored beside its upload for an instance that has to
	// complete the upload if this one dies (tail.go).
	TailEvery time.Duration
	Log       zerolog.Logger
}

func (o *Options) fill() {
	if o.PartSize < MinPartSize {
		o.PartSize = MinPartSize
	}
	if o.Poll <= 0 {
		o.Poll = 2 * time.Second
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Minute
	}
}

type fileKey struct{ rec, file string }

// Uploader follows files and uploads them.
type Uploader struct {
	db    *storage.DB
	store Store
	opts  Options
	log   zerolog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	sem    chan struct{}
	bufs   sync.Pool

	mu        sync.Mutex
	followers map[fileKey]*follower
	// confirmMu serialises the two ways an upload is confirmed (HEAD, store events).
	confirmMu sync.Mutex
	// events holds store notifications that came before the upload was recorded as
	// complete (the store tells as soon as the object exists), by bucket/key.
	events map[string]storeEvent
	// external holds what another program uploads (external.go).
	external  externals
	recCancel map[string][]context.CancelFunc
	closed    bool
	wg        sync.WaitGroup
}

type follower struct {
	key    fileKey
	folder string
	ctx    context.Context
	final  chan final
	done   chan struct{}
	chunks map[int]storage.Chunk
	log    zerolog.Logger
	// mkv follows a WebM/Matroska file's clusters to send them as they will be final.
	mkv *mkvTracker
	// tail is the file's tail in object storage, with TailEvery.
	tail *tailState
}

type final struct {
	size int64
	sha  string
}

type storeEvent struct {
	size int64
	etag string
}

// maxEarlyEvents bounds the store notifications kept for uploads not yet complete.
const maxEarlyEvents = 10000

// New creates an uploader; its work ends with ctx or Close.
func New(ctx context.Context, db *storage.DB, store Store, opts Options) *Uploader {
	opts.fill()
	ctx, cancel := context.WithCancel(ctx)
	u := &Uploader{
		db: db, store: store, opts: opts, log: opts.Log.With().Str("component", "upload").Logger(),
		ctx: ctx, cancel: cancel, sem: make(chan struct{}, opts.Concurrency),
		followers: map[fileKey]*follower{}, recCancel: map[string][]context.CancelFunc{}, events: map[string]storeEvent{},
		external: newExternals(),
	}
	u.bufs.New = func() any { b := make([]byte, opts.PartSize); return &b }
	return u
}

// Follow starts uploading a file that is being written (idempotent).
func (u *Uploader) Follow(recordingID, folder, file string) {
	u.follower(recordingID, folder, file, u.run)
}

// Finish tells the uploader that a file is final (its size and SHA-256 as the manifest
// says), starting its upload if it was not followed yet.
func (u *Uploader) Finish(recordingID, folder, file string, size int64, sha string) {
	f := u.follower(recordingID, folder, file, u.run)
	if f == nil {
		return
	}
	select {
	case f.final <- final{size: size, sha: sha}:
	default:
		// Already told; the first word stands (a file is finished once).
	}
}

// follower returns the file's follower, starting one that runs work when there is none.
func (u *Uploader) follower(recordingID, folder, file string, work func(*follower)) *follower {
	k := fileKey{recordingID, file}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil
	}
	if f := u.followers[k]; f != nil {
		return f
	}
	ctx, cancel := context.WithCancel(u.ctx)
	u.recCancel[recordingID] = append(u.recCancel[recordingID], cancel)
	f := &follower{
		key: k, folder: filepath.Base(folder), ctx: ctx, final: make(chan final, 1), done: make(chan struct{}),
		log: u.log.With().Str("recording", recordingID).Str("file", file).Logger(),
	}
	if isMatroska(file) {
		f.mkv = newMkvTracker(u.opts.TailEvery > 0)
	}
	if u.opts.TailEvery > 0 {
		f.tail = &tailState{}
		if c, ok := codec.ContainerOf(file); ok && c.Name == "ogg" {
			f.tail.ogg = &oggTracker{}
		}
	}
	u.followers[k] = f
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		defer cancel()
		defer close(f.done)
		work(f)
	}()
	return f
}

// Wait waits until no file of the recording is being uploaded, or ctx ends.
func (u *Uploader) Wait(ctx context.Context, recordingID string) error {
	for {
		u.mu.Lock()
		var wait []chan struct{}
		for k, f := range u.followers {
			if k.rec == recordingID {
				wait = append(wait, f.done)
			}
		}
		u.mu.Unlock()
		pending := false
		for _, d := range wait {
			select {
			case <-d:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		u.mu.Lock()
		for k, f := range u.followers {
			if k.rec != recordingID {
				continue
			}
			select {
			case <-f.done:
			default:
				pending = true
			}
		}
		u.mu.Unlock()
		if !pending {
			return nil
		}
	}
}

// Cancel stops uploading every file of a recording (it is being deleted) and waits for
// their goroutines.
func (u *Uploader) Cancel(recordingID string) {
	u.mu.Lock()
	for _, c := range u.recCancel[recordingID] {
		c()
	}
	var wait []chan struct{}
	for k, f := range u.followers {
		if k.rec == recordingID {
			wait = append(wait, f.done)
			delete(u.followers, k)
		}
	}
	delete(u.recCancel, recordingID)
	u.mu.Unlock()
	for _, d := range wait {
		<-d
	}
}

// Forget drops the finished followers of a recording (after its summary is out).
func (u *Uploader) Forget(recordingID string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for k, f := range u.followers {
		if k.rec != recordingID {
			continue
		}
		select {
		case <-f.done:
			delete(u.followers, k)
		default:
		}
	}
	for k := range u.followers {
		if k.rec == recordingID {
			return
		}
	}
	for _, c := range u.recCancel[recordingID] {
		c()
	}
	delete(u.recCancel, recordingID)
}

// Close stops every upload (their progress is in the database) and waits, bounded by ctx.
func (u *Uploader) Close(ctx context.Context) error {
	u.mu.Lock()
	u.closed = true
	u.mu.Unlock()
	u.cancel()
	done := make(chan struct{})
	go func() {
		u.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return errors.New("uploads did not stop in time")
	}
}

// run is one file's upload loop.
func (u *Uploader) run(f *follower) {
	ctx := f.ctx
	path := filepath.Join(u.opts.Dir, f.folder, f.key.file)
	key := u.store.Key(f.folder, f.key.file)
	var row *storage.Upload
	var fin *final
	backoff := u.opts.MinBackoff
	for {
		if ctx.Err() != nil {
			return
		}
		var err error
		if row == nil {
			row, err = u.db.EnsureUpload(ctx, f.key.rec, f.key.file, u.store.Bucket(), key)
			if errors.Is(err, storage.ErrUploadGone) || err == nil && (row.Status == storage.UploadConfirmed || row.Status.Gone()) {
				return // done, or deleted with its recording
			}
		}
		if err == nil && f.chunks == nil {
			err = u.loadChunks(ctx, f, row.ID)
		}
		if fin == nil {
			select {
			case fi := <-f.final:
				fin = &fi
			default:
			}
		}
		if err == nil {
			if fin != nil {
				var terminal bool
				terminal, err = u.finalize(ctx, f, row, path, key, *fin)
				if (err == nil || errors.Is(err, errTakenOver) || errors.Is(err, storage.ErrUploadGone)) && u.opts.TailEvery > 0 {
					if terr := u.dropTails(context.WithoutCancel(ctx), key); terr != nil {
						f.log.Warn().Err(terr).Msg("Could not delete the file's tail; it stays beside the file")
					}
				}
				if err == nil || terminal || errors.Is(err, errTakenOver) {
					return
				}
				if errors.Is(err, storage.ErrUploadGone) {
					u.removed(ctx, f, key, row.UploadID)
					return
				}
			} else {
				err = u.sendGrowing(ctx, f, row, path, key)
				if err == nil {
					u.keepTail(ctx, f, row.UploadID, path, key)
				}
			}
		}
		wait := u.opts.Poll
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, errTakenOver) {
				return
			}
			if errors.Is(err, storage.ErrUploadGone) {
				u.removed(ctx, f, key, row.UploadID)
				return
			}
			if errors.Is(u.failed(ctx, f, row, err), storage.ErrUploadGone) {
				u.removed(ctx, f, key, row.UploadID) // deleted while the store failed
				return
			}
			wait = backoff
			backoff = min(backoff*2, u.opts.MaxBackoff)
		} else {
			backoff = u.opts.MinBackoff
		}
		select {
		case <-ctx.Done():
			return
		case fi := <-f.final:
			fin = &fi
		case <-time.After(wait):
		}
	}
}

// loadChunks reads the parts on record of the file's upload into f.chunks.
func (u *Uploader) loadChunks(ctx context.Context, f *follower, uploadRow int64) error {
	cs, err := u.db.Chunks(ctx, uploadRow)
	if err != nil {
		return err
	}
	f.chunks = make(map[int]storage.Chunk, len(cs))
	for _, c := range cs {
		f.chunks[c.Number] = c
	}
	return nil
}

// failed logs and records a failed attempt; ErrUploadGone: the row is gone with its
// recording (nothing recorded).
func (u *Uploader) failed(ctx context.Context, f *follower, row *storage.Upload, err error) (dberr error) {
	ev := f.log.Warn()
	if s3store.IsSetupError(err) {
		ev = f.log.Error().Str("hint", "check storage.s3 in the config: bucket, keys and permissions")
	}
	ev.Err(err).Msg("Upload attempt failed; will retry")
	if row == nil {
		return nil
	}
	row.Attempts++
	row.LastError = err.Error()
	if len(row.LastError) > 500 {
		row.LastError = row.LastError[:500]
	}
	if dberr = u.db.UpdateUpload(context.WithoutCancel(ctx), row); errors.Is(dberr, storage.ErrUploadGone) {
		return dberr
	} else if dberr != nil {
		f.log.Warn().Err(dberr).Msg("Could not record the failed attempt")
	}
	if u.opts.OnFailure != nil {
		u.opts.OnFailure(row, err)
	}
	return dberr
}

// sendGrowing sends the whole parts of a file that is still being written.
func (u *Uploader) sendGrowing(ctx context.Context, f *follower, row *storage.Upload, path, key string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // not created yet
	} else if err != nil {
		return fmt.Errorf("look at %s: %w", path, err)
	}
	size := fi.Size()
	limit := size
	var patch func([]byte, int64)
	if f.mkv != nil {
		file, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("open %s: %w", path, err)
		}
		f.mkv.advance(file, size)
		_ = file.Close()
		limit = f.mkv.safeEnd(size)
		patch = f.mkv.patch
	}
	P := u.opts.PartSize
	for n := 1; int64(n)*P <= limit && n < MaxParts; n++ {
		if c, ok := f.chunks[n]; ok && c.Offset == int64(n-1)*P && c.Size == P {
			continue
		}
		if err := u.sendRange(ctx, f, row, path, key, n, int64(n-1)*P, P, nil, nil, patch); err != nil {
			return err
		}
	}
	return nil
}

// sendRange reads [off, off+size) of the file and sends it as part n, unless the part on
// record has the same MD5. h, when set, is fed the bytes (the whole-file SHA-256); sums
// collects the part's MD5; patch, when set, changes the bytes into what they will be
// once the file is final.
func (u *Uploader) sendRange(ctx context.Context, f *follower, row *storage.Upload, path, key string, n int, off, size int64, h io.Writer, sums *[][]byte, patch func([]byte, int64)) error {
	release, err := u.slot(ctx)
	if err != nil {
		return err
	}
	defer release()
	bp := u.bufs.Get().(*[]byte)
	defer u.bufs.Put(bp)
	buf := (*bp)[:size]
	if err := readAt(path, buf, off); err != nil {
		return err
	}
	if patch != nil {
		patch(buf, off)
	}
	sum := md5.Sum(buf)
	if h != nil {
		_, _ = h.Write(buf)
	}
	if sums != nil {
		*sums = append(*sums, sum[:])
	}
	hexSum := hex.EncodeToString(sum[:])
	if c, ok := f.chunks[n]; ok && c.Offset == off && c.Size == size && c.MD5 == hexSum && row.UploadID != "" {
		return nil
	}
	if row.UploadID == "" {
		id, err := u.store.NewMultipart(ctx, key)
		if err != nil {
			return err
		}
		row.UploadID = id
		row.Status = storage.UploadUploading
		if err := u.db.UpdateUpload(ctx, row); err != nil {
			return err // ErrUploadGone: run aborts the upload just begun
		}
	}
	etag, err := u.store.PutPart(ctx, key, row.UploadID, n, buf, sum[:])
	if s3store.IsNoSuchUpload(err) {
		if u.completedElsewhere(ctx, f, row) {
			return errTakenOver
		}
		if rerr := u.reset(ctx, f, row); rerr != nil {
			return rerr // deleted (and aborted) meanwhile: nothing to upload again
		}
	}
	if err != nil {
		return err
	}
	c := storage.Chunk{Number: n, Offset: off, Size: size, MD5: hexSum, ETag: etag}
	if err := u.db.PutChunk(ctx, row.ID, c); err != nil {
		return err
	}
	f.chunks[n] = c
	if u.opts.OnSent != nil {
		u.opts.OnSent(size)
	}
	return nil
}

// slot takes one of the Concurrency slots that bound the transfers in flight (and their
// buffers) across all files; release gives it back.
func (u *Uploader) slot(ctx context.Context) (release func(), err error) {
	select {
	case u.sem <- struct{}{}:
		return func() { <-u.sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// readAt reads len(buf) bytes of the file at path from offset off.
func readAt(path string, buf []byte, off int64) error {
	file, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	_, err = file.ReadAt(buf, off)
	_ = file.Close()
	if err != nil {
		return fmt.Errorf("read %s at %d: %w", path, off, err)
	}
	return nil
}

// errTakenOver: another instance completed the file's upload (salvage.go).
var errTakenOver = errors.New("another instance completed the upload")

// completedElsewhere reports whether the multipart upload the store no longer knows was
// completed by another instance that took the recording over (salvage.go): the copy it
// made stands, and this instance leaves the file alone instead of uploading it again over
// that copy.
func (u *Uploader) completedElsewhere(ctx context.Context, f *follower, row *storage.Upload) bool {
	cur, err := u.db.UploadOf(context.WithoutCancel(ctx), row.RecordingID, row.File)
	if err != nil || (cur.Status != storage.UploadUploaded && cur.Status != storage.UploadConfirmed) {
		return false
	}
	f.log.Info().Str("confirmed_by", cur.ConfirmedBy).Msg("Another instance completed this file's copy from its tail; leaving it")
	*row = *cur
	return true
}

// reset forgets a multipart upload the store no longer knows (expired or aborted), to
// start it again. ErrUploadGone: the recording was deleted (which aborted it): the upload
// ends instead.
func (u *Uploader) reset(ctx context.Context, f *follower, row *storage.Upload) error {
	ctx = context.WithoutCancel(ctx)
	next := *row
	next.UploadID = ""
	next.Status = storage.UploadPending
	if err := u.db.UpdateUpload(ctx, &next); errors.Is(err, storage.ErrUploadGone) {
		return err
	} else if err != nil {
		f.log.Warn().Err(err).Msg("Could not record the lost upload")
	}
	f.log.Warn().Str("upload_id", row.UploadID).Msg("The store lost the multipart upload; starting it again")
	*row = next
	f.chunks = map[int]storage.Chunk{}
	if err := u.db.DeleteChunks(ctx, row.ID); err != nil {
		f.log.Warn().Err(err).Msg("Could not forget the lost upload's parts")
	}
	return nil
}

// removed ends the upload of a file whose recording was deleted (its row is gone,
// storage.ErrUploadGone), possibly by another instance while this one went on: the
// deletion removed what was in the store then, so what this upload made since (an
// object at key, the multipart upload uploadID) goes too.
func (u *Uploader) removed(ctx context.Context, f *follower, key, uploadID string) {
	ctx = context.WithoutCancel(ctx)
	f.log.Info().Msg("The recording was deleted while its file was being copied; the copy stops and what it made is deleted")
	if uploadID != "" {
		if err := u.store.Abort(ctx, key, uploadID); err != nil && !s3store.IsNoSuchUpload(err) {
			f.log.Warn().Err(err).Msg("Could not abort the deleted recording's multipart upload")
		}
	}
	if err := u.store.Remove(ctx, []string{key}); err != nil {
		f.log.Warn().Err(err).Str("key", key).Msg("Could not delete the copy made while the recording was deleted")
	}
}

// md5ETag is an ETag made of MD5s (a plain object's, or a multipart one's with its part count):
// stores that use them let the parts' MD5s check the object.
var md5ETag = regexp.MustCompile(`^[0-9a-f]{32}(-[0-9]+)?$`)

// finalize sends what is left of a final file, completes the upload and confirms it.
// terminal reports an error that retrying cannot fix.
func (u *Uploader) finalize(ctx context.Context, f *follower, row *storage.Upload, path, key string, fin final) (terminal bool, err error) {
	if row.Status == storage.UploadUploaded {
		// Completed by an earlier attempt; only the check is left.
		return u.confirm(ctx, f, row, key)
	}
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		row.Status = storage.UploadFailed
		row.LastError = "the local file is gone"
		f.log.Error().Msg("Cannot upload: the local file is gone")
		return true, errors.Join(errors.New(row.LastError), u.db.UpdateUpload(context.WithoutCancel(ctx), row))
	} else if err != nil {
		return false, fmt.Errorf("look at %s: %w", path, err)
	}
	size := fi.Size()
	P := u.opts.PartSize
	n := int((size + P - 1) / P)
	if n > MaxParts {
		row.Status = storage.UploadFailed
		row.LastError = fmt.Sprintf("the file (%d bytes) needs more than %d parts of %d bytes: raise storage.s3.part_size", size, MaxParts, P)
		f.log.Error().Msg(row.LastError)
		return true, errors.Join(errors.New(row.LastError), u.db.UpdateUpload(context.WithoutCancel(ctx), row))
	}
	sha := sha256.New()
	var sums [][]byte
	var parts []s3store.Part
	var last []byte // the whole file, when it goes in one request
	if n <= 1 && row.UploadID == "" {
		if last, err = os.ReadFile(path); err != nil {
			return false, fmt.Errorf("read %s: %w", path, err)
		}
		sha.Write(last)
		size = int64(len(last))
	} else {
		parts = make([]s3store.Part, 0, n)
		for i := 1; i <= n; i++ {
			off := int64(i-1) * P
			sz := min(P, size-off)
			if err := u.sendRange(ctx, f, row, path, key, i, off, sz, sha, &sums, nil); err != nil {
				return false, err
			}
			parts = append(parts, s3store.Part{Number: i, ETag: f.chunks[i].ETag})
		}
	}
	etag, err := u.complete(ctx, f, key, row.UploadID, parts, sums, last)
	if s3store.IsNoSuchUpload(err) {
		// Maybe completed by a run that died before recording it: the check decides.
		if obj, herr := u.store.Head(ctx, key); herr == nil && obj.Size == size && obj.ETag == s3store.MultipartETag(sums) {
			err, etag = nil, obj.ETag
		} else if u.completedElsewhere(ctx, f, row) {
			return true, errTakenOver
		} else if rerr := u.reset(ctx, f, row); rerr != nil {
			return true, rerr
		}
	}
	if err != nil {
		return false, err
	}
	got := hex.EncodeToString(sha.Sum(nil))
	if fin.sha != "" && got != fin.sha {
		f.log.Warn().Str("manifest_sha256", fin.sha).Str("file_sha256", got).Msg("The file changed after it was finished; uploading it as it is now")
	}
	return u.uploaded(ctx, f, row, key, size, etag, got)
}

// complete makes the object at key from the parts already in the multipart upload
// uploadID (sums: their MD5s, in order) and last, the bytes that follow them, sent as the
// next part; without an upload (uploadID empty, no parts) last is the whole object, sent
// in one request. It returns the ETag the copy is checked against: the one the parts'
// MD5s give. finalize (a file finished here) and salvage (a file another instance was
// writing, completed from its tail) make their copies through it.
func (u *Uploader) complete(ctx context.Context, f *follower, key, uploadID string, parts []s3store.Part, sums [][]byte, last []byte) (string, error) {
	sum := md5.Sum(last)
	var etag, want string
	var err error
	if uploadID == "" {
		if etag, err = u.store.Put(ctx, key, last); err != nil {
			return "", err
		}
		want = hex.EncodeToString(sum[:])
	} else {
		if len(last) > 0 {
			n := len(parts) + 1
			pe, err := u.store.PutPart(ctx, key, uploadID, n, last, sum[:])
			if err != nil {
				return "", err
			}
			parts = append(parts, s3store.Part{Number: n, ETag: pe})
			sums = append(sums, sum[:])
		}
		if etag, err = u.store.Complete(ctx, key, uploadID, parts); err != nil {
			return "", err
		}
		want = s3store.MultipartETag(sums)
	}
	if len(last) > 0 && u.opts.OnSent != nil {
		u.opts.OnSent(int64(len(last)))
	}
	if md5ETag.MatchString(etag) && etag != want {
		f.log.Warn().Str("store_etag", etag).Str("expected", want).Msg("The store reports another ETag than the parts sent")
	}
	return want, nil
}

// uploaded records that the object at key is complete, size bytes with the ETag etag
// (and the file's SHA-256 sha, when known), forgets the multipart upload's parts and
// checks the copy (confirm).
func (u *Uploader) uploaded(ctx context.Context, f *follower, row *storage.Upload, key string, size int64, etag, sha string) (bool, error) {
	row.Status = storage.UploadUploaded
	row.UploadID = ""
	row.Bytes = size
	row.ETag = etag
	row.SHA256 = sha
	row.LastError = ""
	if err := u.db.UpdateUpload(ctx, row); err != nil {
		return false, err // ErrUploadGone: the caller deletes the copy (removed)
	}
	if err := u.db.DeleteChunks(ctx, row.ID); err != nil {
		f.log.Warn().Err(err).Msg("Could not forget the sent parts")
	}
	f.chunks = map[int]storage.Chunk{}
	return u.confirm(ctx, f, row, key)
}

// confirm reads the object back (HEAD): its size must be the file's and its ETag the one
// the parts' MD5s give (when the store uses MD5 ETags). A mismatch starts the upload over.
func (u *Uploader) confirm(ctx context.Context, f *follower, row *storage.Upload, key string) (bool, error) {
	checked := false
	if cur, err := u.db.UploadOf(ctx, row.RecordingID, row.File); err != nil || cur.Status != storage.UploadConfirmed {
		obj, err := u.store.Head(ctx, key)
		if err != nil {
			return false, err
		}
		if obj.Size != row.Bytes || (md5ETag.MatchString(obj.ETag) && obj.ETag != row.ETag) {
			row.Status = storage.UploadPending
			if err := u.db.UpdateUpload(ctx, row); err != nil {
				return false, err
			}
			return false, fmt.Errorf("the stored copy of %s does not match the file (size %d, ETag %s; want %d, %s)", key, obj.Size, obj.ETag, row.Bytes, row.ETag)
		}
		checked = true
	}
	// The store's notification may be handled meanwhile: merge under the lock, and tell
	// OnConfirmed before a notification can add to it.
	u.confirmMu.Lock()
	defer u.confirmMu.Unlock()
	cur, err := u.db.UploadOf(ctx, row.RecordingID, row.File)
	switch {
	case err != nil:
		return false, err
	case cur.Status == storage.UploadConfirmed && !checked:
		*row = *cur // the webhook was faster
	case !checked:
		return false, fmt.Errorf("the upload of %s changed while it was checked", key)
	default:
		webhook := u.earlyEvent(row.Bucket, key, row.Bytes, row.ETag) || (cur.Status == storage.UploadConfirmed && strings.Contains(cur.ConfirmedBy, "webhook"))
		if err := u.markConfirmed(ctx, row, readBack(webhook)); err != nil {
			return false, err
		}
	}
	f.log.Info().Int64("bytes", row.Bytes).Str("key", key).Str("confirmed_by", row.ConfirmedBy).Msg("Upload confirmed")
	if u.opts.OnConfirmed != nil {
		u.opts.OnConfirmed(row)
	}
	return true, nil
}

// markConfirmed records the copy of row as confirmed now, by (how it was checked:
// "head", "webhook" or "head+webhook").
func (u *Uploader) markConfirmed(ctx context.Context, row *storage.Upload, by string) error {
	row.Status = storage.UploadConfirmed
	row.ConfirmedBy = by
	row.ConfirmedAt = time.Now()
	row.LastError = ""
	return u.db.UpdateUpload(ctx, row)
}

// readBack is how a copy read back (HEAD) is confirmed: "head", and "head+webhook"
// when the store's notification for it came too.
func readBack(webhook bool) string {
	if webhook {
		return "head+webhook"
	}
	return "head"
}

// ConfirmFromStore handles the store's own notification that an object was created
// (a bucket webhook): an upload waiting for its check is confirmed when size and ETag
// match. A negative size means the event did not give one (versitygw's multipart
// completions): the ETag alone must match then. It reports whether the event matched an
// upload.
func (u *Uploader) ConfirmFromStore(ctx context.Context, bucket, key string, size int64, etag string) (bool, error) {
	if strings.Contains(key, TailSuffix) {
		return false, nil // a growing file's tail (tail.go), not a copy: no database look-up
	}
	u.confirmMu.Lock()
	defer u.confirmMu.Unlock()
	row, err := u.db.UploadByKey(ctx, bucket, key)
	if errors.Is(err, storage.ErrNotFound) {
		if bucket != u.store.Bucket() || !u.external.expecting(key) {
			return false, nil
		}
		// Another program's upload (Expect), before it was confirmed.
		u.keepEvent(bucket, key, size, etag)
		return true, nil
	} else if err != nil {
		return false, err
	}
	switch row.Status {
	case storage.UploadPending, storage.UploadUploading:
		// The store was faster than our bookkeeping: keep the event for the check.
		u.keepEvent(bucket, key, size, etag)
		return true, nil
	case storage.UploadConfirmed:
		if row.ConfirmedBy == "head" && sameObject(row.Bytes, row.ETag, size, etag) {
			row.ConfirmedBy = "head+webhook"
			if err := u.db.UpdateUpload(ctx, row); err != nil {
				return true, err
			}
			if u.opts.OnEvidence != nil {
				u.opts.OnEvidence(row)
			}
			u.external.evidenceCame(key)
		}
		return true, nil
	case storage.UploadUploaded:
		if !sameObject(row.Bytes, row.ETag, size, etag) {
			return true, fmt.Errorf("store event for %s: size %d ETag %s, expected %d %s", key, size, etag, row.Bytes, row.ETag)
		}
		return true, u.markConfirmed(ctx, row, "webhook")
	}
	return true, nil
}

// keepEvent keeps a store notification that came before the copy could be checked.
func (u *Uploader) keepEvent(bucket, key string, size int64, etag string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.events) >= maxEarlyEvents {
		clear(u.events)
	}
	u.events[bucket+"/"+key] = storeEvent{size: size, etag: etag}
}

// earlyEvent reports (and forgets) whether the store announced this object, as it is,
// before the upload was recorded as complete.
func (u *Uploader) earlyEvent(bucket, key string, size int64, etag string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	ev, ok := u.events[bucket+"/"+key]
	delete(u.events, bucket+"/"+key)
	return ok && sameObject(size, etag, ev.size, ev.etag)
}

// sameObject reports whether a store event (size, etag) describes the object uploaded
// (bytes, rowETag). A negative size is one the event did not give; the ETag decides then.
func sameObject(bytes int64, rowETag string, size int64, etag string) bool {
	return etag == rowETag && (size == bytes || size < 0 && etag != "")
}
