package outbox

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// Defaults for zero Options fields.
const (
	DefaultMaxBytes     = 1 << 30 // 1 GiB of undelivered records
	DefaultSegmentBytes = 8 << 20 // 8 MiB segment files
)

var (
	// ErrFull is returned by Append when its records would take the
	// undelivered bytes past Options.MaxBytes. Nothing was written; retry
	// after the drainer has acknowledged records.
	ErrFull = errors.New("outbox: full")
	// ErrTooLarge is returned by Append for a record that could never fit:
	// larger than Options.MaxBytes on its own, or than 4 GiB. Split it.
	ErrTooLarge = errors.New("outbox: record too large")
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("outbox: closed")
	// ErrCorrupt is returned (wrapped) by Peek or Ack when a record that was
	// intact at Open no longer reads back intact. Reopening the outbox
	// recovers as described in the package comment.
	ErrCorrupt = errors.New("outbox: corrupt record")
	// ErrLocked is returned (wrapped) by Open when another Outbox, in this
	// process or another, has the folder open.
	ErrLocked = errors.New("outbox: folder in use")
)

// Options configures Open.
type Options struct {
	// Dir is the folder holding the outbox; it is created with mode 0o700
	// if missing. Required.
	Dir string
	// MaxBytes bounds the undelivered records on disk, counted with their
	// 8-byte framing. Append returns ErrFull rather than exceed it (and
	// never drops anything). The files can take up to about MaxBytes plus
	// two segments, since delivered records stay until their whole segment
	// is delivered. If the folder already holds more (the bound was
	// lowered), Append returns ErrFull until the drainer catches up. Zero
	// means DefaultMaxBytes.
	MaxBytes int64
	// SegmentBytes is the size at which the active segment file is closed
	// and a new one started. Zero means DefaultSegmentBytes.
	SegmentBytes int64
	// Logger receives recovery reports (torn tails, corruption) and
	// failures to delete delivered segments. Nil discards them.
	Logger *slog.Logger
}

// Entry is one undelivered record returned by Peek.
type Entry struct {
	// Seq is the record's sequence number; pass the last one delivered to
	// Ack.
	Seq uint64
	// Data is the record as given to Append; the caller owns this copy.
	Data []byte
}

// segment is one segment file. base and path never change; end and n grow
// only for the active segment, only in the flusher goroutine, under
// Outbox.mu.
type segment struct {
	base uint64
	path string
	f    *os.File
	end  int64  // offset just past the last intact, fsynced record
	n    uint64 // records: sequence numbers base..base+n-1
}

// cursor is a position in the queue: the record at off in seg, whose
// sequence number is seq (or the end of seg, when off == seg.end).
type cursor struct {
	seg *segment
	off int64
	seq uint64
}

// batch collects the records of concurrent Appends for one write and one
// fsync.
type batch struct {
	bufs    [][]byte // framed records, one slice per Append
	records int
	bytes   int64
	done    chan struct{} // closed when err is final
	err     error
}

// Outbox is a durable on-disk FIFO queue; see the package comment. Its
// methods are safe for any number of goroutines calling Append, Len and
// Bytes, concurrently with one goroutine calling Peek and Ack.
type Outbox struct {
	dir      string
	log      *slog.Logger
	maxBytes int64
	segBytes int64
	lock     *os.File

	kick        chan struct{} // wakes the flusher; closed by Close
	notify      chan struct{} // see Wait
	flusherDone chan struct{}

	// drainMu serialises Peek, Ack and the end of Close, so that the
	// segment files a reader uses are not closed or removed under it.
	drainMu sync.Mutex

	mu       sync.Mutex
	closed   bool
	broken   error      // a failed fsync: no more Appends
	segs     []*segment // oldest first
	active   *segment   // last of segs, written by the flusher
	nextSeq  uint64     // sequence number of the next record appended
	acked    uint64     // highest delivered sequence number
	head     cursor     // first undelivered record
	count    int        // undelivered records
	bytes    int64      // their framed size
	reserved int64      // framed size of records queued for the flusher
	pending  *batch     // records waiting for the flusher, or nil
}

// Open opens the outbox in opts.Dir, creating it if needed, and recovers
// from any crash as described in the package comment.
func Open(opts Options) (*Outbox, error) {
	if opts.Dir == "" {
		return nil, errors.New("outbox: Options.Dir is required")
	}
	if opts.MaxBytes < 0 || opts.SegmentBytes < 0 {
		return nil, errors.New("outbox: Options.MaxBytes and SegmentBytes must not be negative")
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.SegmentBytes == 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := makeDir(opts.Dir); err != nil {
		return nil, fmt.Errorf("outbox: create %s: %w", opts.Dir, err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	o := &Outbox{
		dir:         opts.Dir,
		log:         logger.With("component", "outbox", "dir", opts.Dir),
		maxBytes:    opts.MaxBytes,
		segBytes:    opts.SegmentBytes,
		lock:        lock,
		kick:        make(chan struct{}, 1),
		notify:      make(chan struct{}, 1),
		flusherDone: make(chan struct{}),
	}
	if err := o.load(); err != nil {
		for _, s := range o.segs {
			s.f.Close()
		}
		lock.Close()
		return nil, fmt.Errorf("outbox: open %s: %w", opts.Dir, err)
	}
	if o.count > 0 {
		o.notify <- struct{}{}
	}
	go o.flusher()
	return o, nil
}

// makeDir creates dir with mode 0o700 if it does not exist, and makes its
// entry in the parent folder durable.
func makeDir(dir string) error {
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return syncDir(filepath.Dir(filepath.Clean(dir)))
}

// load reads the ack file and every segment, repairs the last one, and sets
// up the in-memory state.
func (o *Outbox) load() error {
	if err := os.Remove(filepath.Join(o.dir, ackTmpName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	acked, problem, err := readAckFile(o.dir)
	if err != nil {
		return err
	}
	if problem != "" {
		o.log.Warn("ack file unreadable; delivering everything on disk again", "reason", problem)
	}
	o.acked = acked

	dirents, err := os.ReadDir(o.dir)
	if err != nil {
		return err
	}
	var bases []uint64
	for _, d := range dirents {
		if base, ok := parseSegName(d.Name()); ok && d.Type().IsRegular() {
			bases = append(bases, base)
		}
	}
	slices.Sort(bases)

	heads := make(map[*segment]cursor)
	for i, base := range bases {
		last := i == len(bases)-1
		limit := uint64(math.MaxUint64)
		if !last {
			limit = bases[i+1] - base
		}
		seg, res, err := o.loadSegment(base, last, limit)
		if err != nil {
			return err
		}
		o.segs = append(o.segs, seg)
		o.count += int(seg.n - res.skipped)
		o.bytes += res.undeliveredBytes
		if res.skipEnd < seg.end {
			heads[seg] = cursor{seg: seg, off: res.skipEnd, seq: base + res.skipped}
		}
	}

	o.nextSeq = acked + 1
	if len(o.segs) > 0 {
		last := o.segs[len(o.segs)-1]
		if next := last.base + last.n; next >= o.nextSeq {
			o.nextSeq = next
			o.active = last
		} else {
			o.log.Warn("ack file is past the last record on disk; starting a new segment",
				"acked", acked, "last_seq", next-1)
		}
	}
	if o.active == nil {
		seg, err := o.createSegment(o.nextSeq)
		if err != nil {
			return err
		}
		o.segs = append(o.segs, seg)
		o.active = seg
	}

	o.head = cursor{seg: o.active, off: o.active.end, seq: o.nextSeq}
	for _, s := range o.segs {
		if c, ok := heads[s]; ok {
			o.head = c
			break
		}
	}
	idx := slices.Index(o.segs, o.head.seg)
	dead := o.segs[:idx:idx]
	o.segs = slices.Clone(o.segs[idx:])
	o.removeSegments(dead)
	return nil
}

// loadSegment opens and scans one segment file, truncating a torn tail if
// it is the last one.
func (o *Outbox) loadSegment(base uint64, last bool, limit uint64) (*segment, scanResult, error) {
	path := filepath.Join(o.dir, segName(base))
	flag := os.O_RDONLY
	if last {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, scanResult{}, err
	}
	seg := &segment{base: base, path: path, f: f, end: segHeaderSize}
	res, err := o.scanSegmentFile(seg, last, limit)
	if err != nil {
		f.Close()
		return nil, scanResult{}, fmt.Errorf("read %s: %w", path, err)
	}
	seg.end, seg.n = res.end, res.n
	return seg, res, nil
}

func (o *Outbox) scanSegmentFile(seg *segment, last bool, limit uint64) (scanResult, error) {
	name := filepath.Base(seg.path)
	st, err := seg.f.Stat()
	if err != nil {
		return scanResult{}, err
	}
	size := st.Size()
	if size < segHeaderSize {
		// A crash while the segment was being created: it holds no record.
		if !last {
			o.log.Error("segment header incomplete; the segment holds no records", "segment", name, "size", size)
			return scanResult{end: segHeaderSize, skipEnd: segHeaderSize}, nil
		}
		o.log.Warn("segment header incomplete; rewriting it", "segment", name, "discarded_bytes", size)
		return scanResult{end: segHeaderSize, skipEnd: segHeaderSize}, o.rewriteHeader(seg, 0)
	}
	hdr := make([]byte, segHeaderSize)
	if _, err := seg.f.ReadAt(hdr, 0); err != nil {
		return scanResult{}, err
	}
	if b, err := decodeHeader(segMagic, hdr); err != nil || b != seg.base {
		// The name carries the base too, and every record has its own
		// checksum: read on rather than lose the records.
		reason := "base sequence number differs from the file name"
		if err != nil {
			reason = err.Error()
		}
		o.log.Error("segment header damaged; reading its records anyway", "segment", name, "reason", reason)
		if last {
			if err := o.rewriteHeader(seg, size); err != nil {
				return scanResult{}, err
			}
		}
	}
	var skip uint64
	if o.acked >= seg.base {
		skip = o.acked - seg.base + 1
	}
	res, err := scanSegment(seg.f, size, skip, limit)
	if err != nil || res.problem == "" {
		return res, err
	}
	discarded := size - res.end
	if !last {
		o.log.Error("corrupt record in the middle of a segment; skipping the rest of the segment",
			"segment", name, "offset", res.end, "skipped_bytes", discarded, "reason", res.problem,
			"first_lost_seq", seg.base+res.n)
		return res, nil
	}
	o.log.Warn("discarding torn or corrupt tail of the last segment",
		"segment", name, "offset", res.end, "discarded_bytes", discarded, "reason", res.problem)
	if err := seg.f.Truncate(res.end); err != nil {
		return res, err
	}
	return res, seg.f.Sync()
}

// rewriteHeader writes a fresh header over the first bytes of the last
// segment, keeping size bytes (0 truncates the file first).
func (o *Outbox) rewriteHeader(seg *segment, size int64) error {
	if size < segHeaderSize {
		if err := seg.f.Truncate(0); err != nil {
			return err
		}
	}
	if _, err := seg.f.WriteAt(encodeHeader(segMagic, seg.base), 0); err != nil {
		return err
	}
	return seg.f.Sync()
}

// createSegment creates and fsyncs an empty segment file, and fsyncs the
// folder so that its name is durable.
func (o *Outbox) createSegment(base uint64) (*segment, error) {
	path := filepath.Join(o.dir, segName(base))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("outbox: create segment: %w", err)
	}
	_, err = f.WriteAt(encodeHeader(segMagic, base), 0)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = syncDir(o.dir)
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("outbox: create segment %s: %w", path, err)
	}
	return &segment{base: base, path: path, f: f, end: segHeaderSize}, nil
}

// removeSegments closes and deletes delivered segments. Failures are only
// logged: the records are delivered, and the next Open deletes the files.
func (o *Outbox) removeSegments(segs []*segment) {
	if len(segs) == 0 {
		return
	}
	for _, s := range segs {
		if err := errors.Join(s.f.Close(), os.Remove(s.path)); err != nil {
			o.log.Warn("cannot delete delivered segment", "segment", filepath.Base(s.path), "err", err)
		}
	}
	if err := syncDir(o.dir); err != nil {
		o.log.Warn("cannot sync folder after deleting delivered segments", "err", err)
	}
}

// Append adds records to the end of the queue. It returns nil only once
// they are all written and fsynced; otherwise none of them was added.
// Records of concurrent Appends share one write and one fsync. It returns
// ErrFull when they would take the undelivered bytes past
// Options.MaxBytes, ErrTooLarge for a record that can never fit, and
// ErrClosed after Close. After an fsync failure every Append fails: Close
// and Open the outbox again. Append does not keep the record slices.
func (o *Outbox) Append(records ...[]byte) error {
	var size int64
	for _, r := range records {
		rs := recHeaderSize + int64(len(r))
		if uint64(len(r)) > math.MaxUint32 || rs > o.maxBytes {
			return fmt.Errorf("%w: %d bytes, bound %d", ErrTooLarge, len(r), o.maxBytes)
		}
		size += rs
	}
	o.mu.Lock()
	switch {
	case o.closed:
		o.mu.Unlock()
		return ErrClosed
	case o.broken != nil:
		err := o.broken
		o.mu.Unlock()
		return fmt.Errorf("outbox: unusable since a failed sync, reopen it: %w", err)
	case len(records) == 0:
		o.mu.Unlock()
		return nil
	case o.bytes+o.reserved+size > o.maxBytes:
		o.mu.Unlock()
		return ErrFull
	}
	o.reserved += size
	o.mu.Unlock()

	buf := make([]byte, 0, size)
	for _, r := range records {
		buf = appendRecord(buf, r)
	}

	o.mu.Lock()
	if o.closed { // Close began while we encoded.
		o.reserved -= size
		o.mu.Unlock()
		return ErrClosed
	}
	b := o.pending
	if b == nil {
		b = &batch{done: make(chan struct{})}
		o.pending = b
	}
	b.bufs = append(b.bufs, buf)
	b.records += len(records)
	b.bytes += size
	select {
	case o.kick <- struct{}{}:
	default:
	}
	o.mu.Unlock()
	<-b.done
	return b.err
}

// flusher writes the pending batches until Close.
func (o *Outbox) flusher() {
	defer close(o.flusherDone)
	for range o.kick {
		o.flushPending()
	}
	o.flushPending()
}

func (o *Outbox) flushPending() {
	for {
		o.mu.Lock()
		b, broken := o.pending, o.broken
		o.pending = nil
		o.mu.Unlock()
		if b == nil {
			return
		}
		var seg *segment
		var err error
		if broken != nil {
			err = fmt.Errorf("outbox: unusable since a failed sync, reopen it: %w", broken)
		} else {
			seg, err = o.writeBatch(b)
		}
		o.mu.Lock()
		o.reserved -= b.bytes
		if err == nil {
			seg.end += b.bytes
			seg.n += uint64(b.records)
			o.nextSeq += uint64(b.records)
			o.count += b.records
			o.bytes += b.bytes
			select {
			case o.notify <- struct{}{}:
			default:
			}
		}
		b.err = err
		o.mu.Unlock()
		close(b.done)
	}
}

// writeBatch writes and fsyncs b at the end of the active segment, starting
// a new segment first if the active one would outgrow Options.SegmentBytes.
// Only the flusher calls it, so it reads the active segment without the
// lock.
func (o *Outbox) writeBatch(b *batch) (*segment, error) {
	seg := o.active
	if seg.end > segHeaderSize && seg.end+b.bytes > o.segBytes {
		// The active segment is complete and fsynced: start the next.
		next, err := o.createSegment(o.nextSeq)
		if err != nil {
			return nil, err
		}
		o.mu.Lock()
		o.segs = append(o.segs, next)
		o.active = next
		o.mu.Unlock()
		seg = next
	}
	data := b.bufs[0]
	if len(b.bufs) > 1 {
		data = slices.Concat(b.bufs...)
	}
	if _, err := seg.f.WriteAt(data, seg.end); err != nil {
		// Cut the partial write off, so the next batch follows the last
		// intact record.
		if terr := seg.f.Truncate(seg.end); terr != nil {
			o.setBroken(terr)
		}
		return nil, fmt.Errorf("outbox: write %s: %w", seg.path, err)
	}
	if err := seg.f.Sync(); err != nil {
		// After a failed fsync the kernel may have dropped the dirty pages
		// and forgotten the error: nothing written since can be trusted.
		o.setBroken(err)
		return nil, fmt.Errorf("outbox: sync %s: %w", seg.path, err)
	}
	return seg, nil
}

func (o *Outbox) setBroken(err error) {
	o.mu.Lock()
	if o.broken == nil {
		o.broken = err
	}
	o.mu.Unlock()
	o.log.Error("outbox unusable until reopened", "err", err)
}

// segsFrom returns the segments from s to the active one and their
// committed ends. The caller holds o.mu.
func (o *Outbox) segsFrom(s *segment) ([]*segment, []int64) {
	segs := slices.Clone(o.segs[slices.Index(o.segs, s):])
	ends := make([]int64, len(segs))
	for i, s := range segs {
		ends[i] = s.end
	}
	return segs, ends
}

// Peek returns up to max of the oldest undelivered records, oldest first,
// without removing them: the same records come back until Ack. It returns
// no entries when the queue is empty (see Wait). Call it from the drainer
// goroutine only.
func (o *Outbox) Peek(max int) ([]Entry, error) { return o.PeekAfter(0, max) }

// PeekAfter is Peek of the undelivered records after seq: up to max of
// the oldest records whose sequence numbers are above seq. A drainer
// that has the records up to seq in flight (peeked, not yet acknowledged)
// reads the next ones with it. Call it from the drainer goroutine only.
func (o *Outbox) PeekAfter(seq uint64, max int) ([]Entry, error) {
	o.drainMu.Lock()
	defer o.drainMu.Unlock()
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil, ErrClosed
	}
	if o.count == 0 || max <= 0 {
		o.mu.Unlock()
		return nil, nil
	}
	cur := o.head
	segs, ends := o.segsFrom(cur.seg)
	o.mu.Unlock()

	var out []Entry
	for i := 0; len(out) < max; {
		if cur.off >= ends[i] {
			if i++; i == len(segs) {
				break
			}
			cur = cursor{seg: segs[i], off: segHeaderSize, seq: segs[i].base}
			continue
		}
		if cur.seq <= seq { // in flight: step over its header
			size, err := readRecordLen(cur.seg.f, cur.off, ends[i])
			if err != nil {
				return nil, fmt.Errorf("outbox: peek after seq %d: %w", seq, err)
			}
			cur.off += size
			cur.seq++
			continue
		}
		data, size, err := readRecord(cur.seg.f, cur.off, ends[i])
		if err != nil {
			if len(out) > 0 {
				break // Return what is good; the next Peek reports the error.
			}
			return nil, fmt.Errorf("outbox: peek seq %d: %w", cur.seq, err)
		}
		out = append(out, Entry{Seq: cur.seq, Data: data})
		cur.off += size
		cur.seq++
	}
	return out, nil
}

// Ack records that every record up to and including seq has been
// delivered. The position is fsynced before Ack returns, so those records
// are not returned again, even after a crash; segment files holding only
// delivered records are then deleted. Acknowledging an already delivered
// seq does nothing; a seq never appended is an error. Call it from the
// drainer goroutine only.
func (o *Outbox) Ack(seq uint64) error {
	o.drainMu.Lock()
	defer o.drainMu.Unlock()
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return ErrClosed
	}
	if seq <= o.acked {
		o.mu.Unlock()
		return nil
	}
	if seq >= o.nextSeq {
		last := o.nextSeq - 1
		o.mu.Unlock()
		return fmt.Errorf("outbox: ack of seq %d past the last appended seq %d", seq, last)
	}
	cur := o.head
	segs, ends := o.segsFrom(cur.seg)
	o.mu.Unlock()

	// Walk the record headers up to seq to find the new head.
	var freed int64
	var n int
	for i := 0; cur.seq <= seq; {
		if cur.off >= ends[i] {
			if i++; i == len(segs) {
				return fmt.Errorf("outbox: ack of seq %d: %w: committed records end at seq %d", seq, ErrCorrupt, cur.seq-1)
			}
			cur = cursor{seg: segs[i], off: segHeaderSize, seq: segs[i].base}
			continue
		}
		size, err := readRecordLen(cur.seg.f, cur.off, ends[i])
		if err != nil {
			return fmt.Errorf("outbox: ack of seq %d: %w", seq, err)
		}
		cur.off += size
		cur.seq++
		freed += size
		n++
	}
	if err := writeAckFile(o.dir, seq); err != nil {
		return fmt.Errorf("outbox: ack of seq %d: %w", seq, err)
	}

	o.mu.Lock()
	o.acked = seq
	o.count -= n
	o.bytes -= freed
	for cur.off >= cur.seg.end && cur.seg != o.active {
		next := o.segs[slices.Index(o.segs, cur.seg)+1]
		cur = cursor{seg: next, off: segHeaderSize, seq: next.base}
	}
	o.head = cur
	idx := slices.Index(o.segs, cur.seg)
	dead := slices.Clone(o.segs[:idx])
	o.segs = slices.Clone(o.segs[idx:])
	o.mu.Unlock()
	o.removeSegments(dead)
	return nil
}

// Len returns the number of undelivered records, for a queue-depth metric.
func (o *Outbox) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.count
}

// Bytes returns the framed size of the undelivered records: what
// Options.MaxBytes bounds.
func (o *Outbox) Bytes() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.bytes
}

// Wait returns a channel that receives a value after records are appended
// (signals coalesce: one value may stand for many Appends), and at Open if
// records are waiting, so a drainer that found the queue empty can sleep on
// it. The channel is closed by Close.
func (o *Outbox) Wait() <-chan struct{} {
	return o.notify
}

// Close waits for Appends in progress to finish, then closes the files and
// releases the folder. Later calls return ErrClosed; so do calls to Close
// after the first.
func (o *Outbox) Close() error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return ErrClosed
	}
	o.closed = true
	close(o.kick)
	o.mu.Unlock()
	<-o.flusherDone

	o.drainMu.Lock()
	defer o.drainMu.Unlock()
	var errs []error
	for _, s := range o.segs {
		errs = append(errs, s.f.Close())
	}
	errs = append(errs, o.lock.Close())
	close(o.notify)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("outbox: close: %w", err)
	}
	return nil
}
