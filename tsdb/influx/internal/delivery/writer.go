// Package delivery is the InfluxDB store's write path: line protocol with
// unique point keys, a durable local outbox drained by a single goroutine
// into InfluxDB exactly once, and the idempotency ledger of client retries.
package delivery

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/internal/outbox"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// ErrClosed: the writer is closed.
var ErrClosed = errors.New("influx: store closed")

// The write path. Every write (operations, session events and spend points) is encoded
// as line protocol, with its final point times, and appended to the durable
// outbox (fsynced); only then does the caller wait, up to WriteTimeout, for
// the drainer to deliver it (not at all while InfluxDB is failing: then the
// call returns as soon as its record is durable). The drainer is the single goroutine that sends
// to InfluxDB: it takes the oldest records in order (so a write queues
// behind an outage's backlog), posts them in one request (group commit;
// a large one in parts at once, postParallel) while it already posts the
// next ones (up to flightsMax deliveries in flight), and acknowledges them
// in the outbox, in order, once InfluxDB took them. A caller
// whose record was delivered in time returns nil with its data visible to
// the next read; one whose record was not returns nil too, since its data
// is durable here and will be delivered. Re-delivery after a crash rewrites
// identical points (same series, time and fields), which InfluxDB makes
// idempotent: exactly-once from an at-least-once outbox.

// Options configure Open. Every field is required but the callbacks; the
// store fills in its defaults first.
type Options struct {
	URL, Token, Org, Bucket string
	// HTTP sends the write requests.
	HTTP *http.Client

	OutboxDir      string
	OutboxMaxBytes int64
	DeadLetterPath string

	WriteTimeout, RequestTimeout time.Duration
	RetryMin, RetryMax           time.Duration
	MaxBatchBytes                int
	SlotKeys                     int

	Registerer prometheus.Registerer
	Logger     *slog.Logger

	// OnHeader, when set, sees the headers of every answer to a write
	// request (they carry the server's version).
	OnHeader func(http.Header)
	// OnDelivered, when set, sees the line protocol of the records
	// InfluxDB took (or that were dead-lettered), before any caller waiting
	// for them is told: a read the caller makes next must see them.
	OnDelivered func(lps [][]byte)
}

// Writer makes writes durable in the outbox and delivers them. It is safe
// for concurrent use.
type Writer struct {
	opts     Options
	log      *slog.Logger
	ob       *outbox.Outbox
	writeURL string
	slots    *Slots
	metrics  *metrics

	// ledger holds the ids of keyed operations taken, so that a client's
	// retry is stored once; keyedMu makes its check and record one step.
	ledger  *ledger
	keyedMu sync.Mutex

	tokenBase uint64
	tokenSeq  atomic.Uint64
	waitMu    sync.Mutex
	waiters   map[uint64]*waiter

	ctx       context.Context // cancelled by Close: stops requests in flight
	cancel    context.CancelFunc
	kick      chan struct{}
	stop      chan struct{}
	drainDone chan struct{}
	closed    atomic.Bool
	closeOnce sync.Once

	// degraded: the drainer's last attempt failed in a retryable way.
	degraded atomic.Bool

	logMu       sync.Mutex
	lastErrKind string
	dlMu        sync.Mutex
}

// Open opens the outbox and the ledger, registers the metrics and starts
// the drainer. It does not contact InfluxDB.
func Open(o Options) (*Writer, error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ob, err := outbox.Open(outbox.Options{
		Dir:      o.OutboxDir,
		MaxBytes: o.OutboxMaxBytes,
		Logger:   logger.With("component", "outbox"),
	})
	if err != nil {
		return nil, fmt.Errorf("influx: %w", err)
	}
	led, err := openLedger(filepath.Join(o.OutboxDir, "idempotency.ledger"), ledgerMax, ledgerTTL, time.Now())
	if err != nil {
		ob.Close()
		return nil, err
	}
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	ctx, cancel := context.WithCancel(context.Background())
	w := &Writer{
		opts:      o,
		log:       logger,
		ob:        ob,
		writeURL:  writeURL(o),
		slots:     NewSlots(o.SlotKeys),
		ledger:    led,
		tokenBase: binary.BigEndian.Uint64(seed[:]) &^ (1<<32 - 1),
		waiters:   make(map[uint64]*waiter),
		ctx:       ctx,
		cancel:    cancel,
		kick:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		drainDone: make(chan struct{}),
	}
	w.metrics = newMetrics(o.Registerer,
		func() float64 { return float64(ob.Len()) },
		func() float64 { return float64(ob.Bytes()) })
	if n := ob.Len(); n > 0 {
		logger.Info("outbox holds undelivered batches from an earlier run", "records", n, "bytes", ob.Bytes())
	}
	go w.drain()
	return w, nil
}

// Close stops the drainer and closes the outbox and the ledger. What it has
// not delivered stays in the outbox for the next Open.
func (w *Writer) Close() error {
	err := ErrClosed
	w.closeOnce.Do(func() {
		w.closed.Store(true)
		close(w.stop)
		w.cancel()
		<-w.drainDone
		err = errors.Join(w.ob.Close(), w.ledger.Close())
	})
	return err
}

// Backlog answers the records and bytes in the outbox.
func (w *Writer) Backlog() (records int, bytes int64) { return w.ob.Len(), w.ob.Bytes() }

// WriteOperations encodes ops with unique point keys and submits them;
// keyed operations the ledger knows (a client's retries) are marked
// Duplicate and skipped.
func (w *Writer) WriteOperations(ctx context.Context, ops []tsdb.Operation) error {
	if len(ops) == 0 {
		return nil
	}
	keyed := false
	for i := range ops {
		keyed = keyed || ops[i].Keyed
	}
	if keyed {
		// A keyed operation the ledger knows is a client's retry: skip it.
		w.keyedMu.Lock()
		defer w.keyedMu.Unlock()
		w.ledger.markDuplicates(ops)
	}
	var e Encoder
	e.b = make([]byte, 0, 400*len(ops))
	for i := range ops {
		if ops[i].Duplicate {
			continue
		}
		off, dup := w.slots.Assign(&ops[i])
		e.Operation(&ops[i], off, dup)
	}
	if err := w.Submit(ctx, e.b); err != nil {
		return err
	}
	if keyed {
		// The operations are durable already; a ledger that cannot record
		// them only weakens the detection of their retries.
		if err := w.ledger.add(ops, time.Now()); err != nil {
			w.log.Warn("idempotency ledger not updated", "err", err)
		}
	}
	return nil
}

// WriteSpend encodes points with unique point keys and submits them, as
// WriteOperations does keyed operations: every spend point is keyed, so
// points the ledger knows, or that an earlier point of the batch carries
// (a retried export), are marked Duplicate and skipped. Spend points are
// line protocol of their own measurement in the same outbox records as
// operations, delivered by the same drainer.
func (w *Writer) WriteSpend(ctx context.Context, points []tsdb.SpendPoint) error {
	if len(points) == 0 {
		return nil
	}
	w.keyedMu.Lock()
	defer w.keyedMu.Unlock()
	dups := w.ledger.duplicates(len(points), func(i int) (uuid.UUID, bool) { return points[i].ID, true })
	var e Encoder
	e.b = make([]byte, 0, 200*len(points))
	ids := make([]uuid.UUID, 0, len(points))
	for i := range points {
		points[i].Duplicate = dups[i]
		if dups[i] {
			continue
		}
		off, dup := w.slots.AssignSpend(&points[i])
		e.Spend(&points[i], off, dup)
		ids = append(ids, points[i].ID)
	}
	if err := w.Submit(ctx, e.b); err != nil {
		return err
	}
	// Durable already; see WriteOperations.
	if err := w.ledger.addIDs(ids, time.Now()); err != nil {
		w.log.Warn("idempotency ledger not updated", "err", err)
	}
	return nil
}

// Outbox record: a version byte, the writer's token (uint64, big-endian)
// and line protocol. The token routes the drainer's result back to a
// waiting caller; a record recovered after a restart has no caller.
const recordVersion = 1

func encodeRecord(token uint64, lp []byte) []byte {
	b := make([]byte, 9, 9+len(lp))
	b[0] = recordVersion
	binary.BigEndian.PutUint64(b[1:], token)
	return append(b, lp...)
}

func decodeRecord(b []byte) (token uint64, lp []byte, err error) {
	if len(b) < 9 || b[0] != recordVersion {
		return 0, nil, fmt.Errorf("influx: outbox record of unknown format (%d bytes)", len(b))
	}
	return binary.BigEndian.Uint64(b[1:9]), b[9:], nil
}

// splitLines cuts lp (whole lines) into chunks of at most max bytes; a
// line longer than max is a chunk of its own.
func splitLines(lp []byte, max int) [][]byte {
	var out [][]byte
	for len(lp) > 0 {
		if len(lp) <= max {
			out = append(out, lp)
			break
		}
		cut := bytes.LastIndexByte(lp[:max], '\n') + 1
		if cut == 0 { // one line longer than max
			cut = bytes.IndexByte(lp, '\n') + 1
			if cut == 0 {
				cut = len(lp)
			}
		}
		out = append(out, lp[:cut])
		lp = lp[cut:]
	}
	return out
}

type waiter struct {
	remaining int
	ch        chan error // buffered 1
}

// Submit makes lp durable in the outbox and waits, within WriteTimeout of
// the call, for InfluxDB to take it. It answers nil once lp is durable
// (delivered or not), tsdb.ErrBacklogFull (wrapped) when the outbox is
// full, and an error when InfluxDB rejected the data as invalid.
func (w *Writer) Submit(ctx context.Context, lp []byte) error {
	start := time.Now()
	defer func() { w.metrics.writeDuration.Observe(time.Since(start).Seconds()) }()
	if len(lp) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if w.closed.Load() {
		return ErrClosed
	}
	chunks := splitLines(lp, w.opts.MaxBatchBytes)
	token := w.tokenBase + w.tokenSeq.Add(1)
	wt := &waiter{remaining: len(chunks), ch: make(chan error, 1)}
	records := make([][]byte, len(chunks))
	for i, c := range chunks {
		records[i] = encodeRecord(token, c)
	}
	w.waitMu.Lock()
	w.waiters[token] = wt
	w.waitMu.Unlock()
	if err := w.ob.Append(records...); err != nil {
		w.forget(token)
		if errors.Is(err, outbox.ErrFull) || errors.Is(err, outbox.ErrTooLarge) {
			w.metrics.writeErrors.WithLabelValues(kindBacklogFull).Inc()
			return fmt.Errorf("%w: %d bytes undelivered (bound %d): %v", tsdb.ErrBacklogFull, w.ob.Bytes(), w.opts.OutboxMaxBytes, err)
		}
		w.metrics.writeErrors.WithLabelValues(kindOutbox).Inc()
		return fmt.Errorf("influx: outbox: %w", err)
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
	if w.degraded.Load() {
		// InfluxDB failed the drainer's last attempt: the record queues
		// behind the backlog and waiting would only hold the caller.
		w.forget(token)
		return nil
	}
	timer := time.NewTimer(w.opts.WriteTimeout - time.Since(start))
	defer timer.Stop()
	select {
	case err := <-wt.ch:
		return err
	case <-timer.C:
		// InfluxDB is slower than the write deadline: until the drainer
		// delivers again, later callers return as soon as their data is
		// durable, so that no request waits behind a stalled one.
		w.degraded.Store(true)
	case <-ctx.Done(): // durable already: the caller's data will land
	case <-w.stop:
	}
	w.forget(token)
	return nil
}

func (w *Writer) forget(token uint64) {
	w.waitMu.Lock()
	delete(w.waiters, token)
	w.waitMu.Unlock()
}

// releaseWaiters lets every waiting caller return nil: InfluxDB failed,
// their records are durable and will be delivered from the outbox.
func (w *Writer) releaseWaiters() {
	w.waitMu.Lock()
	defer w.waitMu.Unlock()
	for tok, wt := range w.waiters {
		delete(w.waiters, tok)
		wt.ch <- nil
	}
}

// settle reports one delivered (err == nil) or rejected record of token.
func (w *Writer) settle(token uint64, err error) {
	w.waitMu.Lock()
	defer w.waitMu.Unlock()
	wt := w.waiters[token]
	if wt == nil {
		return
	}
	wt.remaining--
	if err != nil || wt.remaining == 0 {
		delete(w.waiters, token)
		wt.ch <- err
	}
}

// flightsMax is how many deliveries the drainer has in flight at once.
// Each caller waits for its own record, so without a pipeline InfluxDB
// sat idle while the drainer settled one delivery and the callers it
// answered sent their next records: with 4 batch clients it was idle a
// quarter of the time. Later records go out while earlier ones are in
// flight, and are settled in order, as before.
const flightsMax = 3

// flight is one delivery in flight: records the drainer peeked, their
// line protocol, and the answer of the requests that carry it.
type flight struct {
	entries []outbox.Entry
	done    chan struct{} // closed when err is final
	err     *writeErr     // nil: InfluxDB took every record
	// serial: a record is not ours to decode, or InfluxDB rejected part
	// of the delivery: deliver (one request, then halves) settles it.
	serial bool
}

// fly starts the delivery of entries: as one request, or in parallel
// parts when large (postParallel).
func (w *Writer) fly(entries []outbox.Entry) *flight {
	f := &flight{entries: entries, done: make(chan struct{})}
	lps := make([][]byte, len(entries))
	for i, e := range entries {
		_, lp, err := decodeRecord(e.Data)
		if err != nil {
			f.serial = true
			close(f.done)
			return f
		}
		lps[i] = lp
	}
	go func() {
		defer close(f.done)
		if bodySize(lps) == 0 {
			return
		}
		ok, werr := w.postParallel(lps)
		if !ok && werr == nil {
			werr = w.post(lps...)
		}
		if werr != nil {
			f.err, f.serial = werr, !werr.retry()
		}
	}()
	return f
}

// drain is the drainer goroutine. It keeps up to flightsMax deliveries in
// flight, each of the oldest records not yet in flight, and settles them
// oldest first: OnDelivered, Ack, then the waiting callers. When one
// fails, the ones after it are waited out and forgotten, and their
// records sent again from the outbox's head (InfluxDB keeps one point per
// series and time: writing one twice is harmless).
func (w *Writer) drain() {
	defer close(w.drainDone)
	backoff := w.opts.RetryMin
	// peek adapts how many records one Peek reads, so that it reads about
	// one request's worth (MaxBatchBytes), not 256 large records.
	peek := 16
	var flights []*flight
	abandon := func() {
		for _, f := range flights {
			<-f.done
		}
		flights = nil
	}
	defer abandon()
	pause := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-w.stop:
			return false
		}
	}
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		for len(flights) < flightsMax {
			var after uint64
			if len(flights) > 0 {
				last := flights[len(flights)-1].entries
				after = last[len(last)-1].Seq
			}
			entries, err := w.ob.PeekAfter(after, peek)
			if err != nil && len(flights) > 0 {
				break // settle what is in flight; the next Peek reports it
			}
			if err != nil {
				if errors.Is(err, outbox.ErrClosed) {
					return
				}
				w.log.Error("outbox peek failed", "err", err)
				if !pause(w.opts.RetryMax) {
					return
				}
				continue
			}
			if len(entries) == 0 {
				break
			}
			// Bound the request body; always take at least one record.
			size, n := 0, 0
			for n < len(entries) && (n == 0 || size+len(entries[n].Data) <= w.opts.MaxBatchBytes) {
				size += len(entries[n].Data)
				n++
			}
			switch {
			case n < len(entries):
				peek = max(1, n)
			case n == peek && size < w.opts.MaxBatchBytes/2:
				peek = min(2*peek, 256)
			}
			flights = append(flights, w.fly(entries[:n]))
		}
		if len(flights) == 0 {
			select {
			case <-w.ob.Wait():
			case <-w.kick:
			case <-w.stop:
				return
			}
			continue
		}
		f := flights[0]
		if len(flights) < flightsMax {
			select {
			case <-f.done:
			case <-w.ob.Wait(): // more to send meanwhile
				continue
			case <-w.kick:
				continue
			case <-w.stop:
				return
			}
		} else {
			select {
			case <-f.done:
			case <-w.stop:
				return
			}
		}
		flights = flights[1:]

		entries := f.entries
		done, retryAfter, results := len(entries), time.Duration(0), make([]error, len(entries))
		if f.err != nil || f.serial {
			abandon()
			if f.serial {
				done, retryAfter, results = w.deliver(entries)
			} else {
				done, retryAfter = 0, f.err.retryAfter
			}
		}
		if done > 0 && w.opts.OnDelivered != nil {
			// Before any caller hears of it: its next read sees the write.
			w.delivered(entries[:done])
		}
		if done > 0 {
			if err := w.ob.Ack(entries[done-1].Seq); err != nil {
				// Not acknowledged: delivered again later, harmlessly.
				w.log.Error("outbox ack failed", "seq", entries[done-1].Seq, "err", err)
				abandon()
				if !pause(backoff) {
					return
				}
				continue
			}
			for i := 0; i < done; i++ {
				if tok, _, err := decodeRecord(entries[i].Data); err == nil {
					w.settle(tok, results[i])
				}
			}
		}
		if done == len(entries) {
			if w.degraded.Swap(false) {
				w.log.Info("influxdb write recovered", "outbox_records", w.ob.Len())
			}
			backoff = w.opts.RetryMin
			continue
		}
		w.degraded.Store(true)
		w.releaseWaiters()
		wait := max(backoff, min(retryAfter, w.opts.RetryMax))
		backoff = min(2*backoff, w.opts.RetryMax)
		if !pause(wait) {
			return
		}
	}
}

// delivered hands the line protocol of delivered entries to OnDelivered.
func (w *Writer) delivered(entries []outbox.Entry) {
	lps := make([][]byte, 0, len(entries))
	for _, e := range entries {
		if _, lp, err := decodeRecord(e.Data); err == nil {
			lps = append(lps, lp)
		}
	}
	w.opts.OnDelivered(lps)
}

// deliver sends entries to InfluxDB by the one-request path: their
// flight had a record that is not line protocol of ours, or InfluxDB
// rejected part of it. It posts them in one request, then in halves down
// to the culprits, which it dead-letters, and answers how many of them,
// from the first, are settled (delivered, or rejected and dead-lettered:
// results[i] holds the rejection), and when the rest should be retried.
func (w *Writer) deliver(entries []outbox.Entry) (done int, retryAfter time.Duration, results []error) {
	results = make([]error, len(entries))
	lps := make([][]byte, len(entries))
	for i, e := range entries {
		_, lp, err := decodeRecord(e.Data)
		if err != nil {
			w.deadLetter(e.Data, 0, err.Error())
			results[i] = err
			continue
		}
		lps[i] = lp
	}
	var group func(lo, hi int) (int, time.Duration)
	group = func(lo, hi int) (int, time.Duration) {
		body := lps[lo:hi]
		if bodySize(body) == 0 {
			return hi - lo, 0
		}
		werr := w.post(body...)
		switch {
		case werr == nil:
			return hi - lo, 0
		case werr.retry():
			return 0, werr.retryAfter
		case hi-lo > 1: // find the culprit, keep the rest
			mid := (lo + hi) / 2
			n, ra := group(lo, mid)
			if n < mid-lo {
				return n, ra
			}
			m, ra := group(mid, hi)
			return n + m, ra
		case werr.kind == kindTooLarge:
			ok, ra := w.postSplit(lps[lo])
			if !ok {
				return 0, ra
			}
			return 1, 0
		default: // one record, rejected as invalid
			w.deadLetter(lps[lo], werr.status, werr.msg)
			results[lo] = fmt.Errorf("influx: InfluxDB rejected the write: %s", werr.Error())
			return 1, 0
		}
	}
	done, retryAfter = group(0, len(entries))
	return done, retryAfter, results
}

// Parallel delivery: InfluxDB parses and indexes one write request on one
// core, so a large delivery goes out as up to deliveryParts requests at
// once, each at least deliveryPartMin bytes of whole lines.
const (
	deliveryParts   = 4
	deliveryPartMin = 256 << 10
)

// postParallel sends the line protocol of lps as up to deliveryParts
// requests at once, when it is large enough to be worth it, and reports
// whether every part was taken; when not, werr is a failure that may
// succeed later (deliver backs off) or, nil or not retryable, says that
// deliver should send the whole again by its one-request path, which finds
// the culprit and dead-letters it. The parts InfluxDB took already are then
// written again with the same series, times and fields, which it makes
// idempotent.
func (w *Writer) postParallel(lps [][]byte) (ok bool, werr *writeErr) {
	size := bodySize(lps)
	n := min(deliveryParts, size/deliveryPartMin)
	if n < 2 {
		return false, nil
	}
	parts := splitParts(lps, (size+n-1)/n)
	if len(parts) < 2 {
		return false, nil
	}
	errs := make([]*writeErr, len(parts))
	var wg sync.WaitGroup
	for i, part := range parts {
		wg.Go(func() { errs[i] = w.post(part...) })
	}
	wg.Wait()
	for _, e := range errs {
		if e != nil && (werr == nil || e.retry()) {
			werr = e
		}
	}
	return werr == nil, werr
}

// bodySize answers the bytes of a request body of the slices b.
func bodySize(b [][]byte) int {
	n := 0
	for _, s := range b {
		n += len(s)
	}
	return n
}

// splitParts cuts the line protocol of lps (whole lines) into parts of at
// most max bytes, as splitLines cuts their concatenation, each part the
// slices of lps it spans: the records are not copied into one body.
func splitParts(lps [][]byte, max int) [][][]byte {
	var (
		parts [][][]byte
		cur   [][]byte
		room  = max
	)
	next := func() {
		parts = append(parts, cur)
		cur, room = nil, max
	}
	for _, lp := range lps {
		for len(lp) > 0 {
			if len(lp) <= room {
				cur = append(cur, lp)
				room -= len(lp)
				break
			}
			cut := bytes.LastIndexByte(lp[:room], '\n') + 1
			if cut == 0 {
				if len(cur) > 0 { // the next line starts the next part
					next()
					continue
				}
				// One line longer than max: a part of its own.
				if cut = bytes.IndexByte(lp, '\n') + 1; cut == 0 {
					cut = len(lp)
				}
			}
			cur = append(cur, lp[:cut])
			lp = lp[cut:]
			next()
		}
	}
	if len(cur) > 0 {
		parts = append(parts, cur)
	}
	return parts
}

// postSplit sends one record too large for InfluxDB in halves (whole
// lines); a single line still too large, or a half rejected as invalid, is
// dead-lettered. ok is false when a half failed in a retryable way.
func (w *Writer) postSplit(lp []byte) (ok bool, retryAfter time.Duration) {
	lines := bytes.SplitAfter(lp, []byte("\n"))
	if len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	if len(lines) <= 1 {
		w.deadLetter(lp, http.StatusRequestEntityTooLarge, "a single point larger than InfluxDB accepts")
		return true, 0
	}
	half := 0
	for _, l := range lines[:len(lines)/2] {
		half += len(l)
	}
	for _, part := range [][]byte{lp[:half], lp[half:]} {
		werr := w.post(part)
		switch {
		case werr == nil:
		case werr.retry():
			return false, werr.retryAfter
		case werr.kind == kindTooLarge:
			if ok, ra := w.postSplit(part); !ok {
				return false, ra
			}
		default:
			w.deadLetter(part, werr.status, werr.msg)
		}
	}
	return true, 0
}

// writeErr is a failed write request, classified once.
type writeErr struct {
	kind       string
	status     int
	retryAfter time.Duration
	msg        string
}

func (e *writeErr) Error() string {
	if e.status == 0 {
		return e.kind + ": " + e.msg
	}
	return fmt.Sprintf("%s: HTTP %d: %s", e.kind, e.status, e.msg)
}

// retry reports whether the same request may succeed later.
func (e *writeErr) retry() bool {
	switch e.kind {
	case kindRejected, kindTooLarge:
		return false
	}
	return true
}

// post sends one line-protocol body, the concatenation of body, to
// InfluxDB's v2 write endpoint.
func (w *Writer) post(body ...[]byte) *writeErr {
	ctx, cancel := context.WithTimeout(w.ctx, w.opts.RequestTimeout)
	defer cancel()
	werr := w.doPost(ctx, body)
	if werr != nil {
		w.metrics.writeErrors.WithLabelValues(werr.kind).Inc()
		w.logWriteErr(werr)
		return werr
	}
	lines := 0
	for _, b := range body {
		lines += bytes.Count(b, []byte("\n"))
	}
	w.metrics.batchSize.Observe(float64(lines))
	return nil
}

func (w *Writer) doPost(ctx context.Context, body [][]byte) *writeErr {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.writeURL, http.NoBody)
	if err != nil {
		return &writeErr{kind: kindNetwork, msg: err.Error()}
	}
	if size := bodySize(body); size > 0 {
		// net.Buffers reads its slices away: each body gets its own copy
		// of the slice headers, never of the bytes.
		req.ContentLength = int64(size)
		req.GetBody = func() (io.ReadCloser, error) {
			b := net.Buffers(slices.Clone(body))
			return io.NopCloser(&b), nil
		}
		req.Body, _ = req.GetBody()
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	if w.opts.Token != "" {
		req.Header.Set("Authorization", "Token "+w.opts.Token)
	}
	resp, err := w.opts.HTTP.Do(req)
	if err != nil {
		return &writeErr{kind: kindNetwork, msg: redact(err.Error(), w.opts.Token)}
	}
	defer resp.Body.Close()
	if w.opts.OnHeader != nil {
		w.opts.OnHeader(resp.Header)
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	e := &writeErr{status: resp.StatusCode, msg: strings.TrimSpace(string(msg))}
	switch c := resp.StatusCode; {
	case c == http.StatusTooManyRequests:
		e.kind = kindThrottled
	case c == http.StatusRequestEntityTooLarge:
		e.kind = kindTooLarge
	case c == http.StatusUnauthorized || c == http.StatusForbidden:
		e.kind = kindAuth
	case c == http.StatusNotFound:
		e.kind = kindNotFound
	case c == http.StatusRequestTimeout:
		e.kind = kindServer
	case c >= 500:
		e.kind = kindServer
	default:
		e.kind = kindRejected
	}
	// api.ParseRetryAfter caps at a day; the drainer waits at most
	// RetryMax whatever the header says (see drain), so no cap of its own
	// is needed here.
	e.retryAfter = api.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return e
}

// redact answers s with every occurrence of token replaced, for errors and
// logs.
func redact(s, token string) string {
	if token == "" {
		return s
	}
	return strings.ReplaceAll(s, token, "[token]")
}

// logWriteErr logs a failed write; outages log at warning level once per
// kind change, not once per retry.
func (w *Writer) logWriteErr(e *writeErr) {
	w.logMu.Lock()
	repeated := w.lastErrKind == e.kind
	w.lastErrKind = e.kind
	w.logMu.Unlock()
	switch {
	case !e.retry() || e.kind == kindAuth:
		w.log.Error("influxdb write failed", "kind", e.kind, "status", e.status, "err", e.msg)
	case !repeated:
		w.log.Warn("influxdb write failed; retrying from the outbox", "kind", e.kind, "status", e.status,
			"err", e.msg, "outbox_records", w.ob.Len())
	}
}

// deadLetter appends a rejected batch to the dead-letter file (fsynced),
// after a comment line saying when and why.
func (w *Writer) deadLetter(lp []byte, status int, msg string) {
	w.dlMu.Lock()
	defer w.dlMu.Unlock()
	path := w.opts.DeadLetterPath
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		w.log.Error("dead-letter file", "path", path, "err", err, "lost_bytes", len(lp))
		return
	}
	defer f.Close()
	head := fmt.Sprintf("# rejected %s status=%d %s\n", time.Now().UTC().Format(time.RFC3339),
		status, strings.ReplaceAll(msg, "\n", " "))
	buf := append([]byte(head), lp...)
	if len(lp) > 0 && lp[len(lp)-1] != '\n' {
		buf = append(buf, '\n')
	}
	if _, err = f.Write(buf); err == nil {
		err = f.Sync()
	}
	if err != nil {
		w.log.Error("dead-letter write", "path", path, "err", err, "lost_bytes", len(lp))
		return
	}
	w.log.Error("batch rejected by InfluxDB, moved to the dead-letter file", "path", path,
		"status", status, "bytes", len(lp))
}

// writeURL answers the v2 write endpoint.
func writeURL(o Options) string {
	q := url.Values{"bucket": {o.Bucket}, "precision": {"ns"}}
	if o.Org != "" {
		q.Set("org", o.Org)
	}
	return strings.TrimRight(o.URL, "/") + "/api/v2/write?" + q.Encode()
}
