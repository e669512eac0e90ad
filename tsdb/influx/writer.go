package influx

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/omnimemory/omnimemory-metrics/internal/outbox"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// ErrBacklogFull: the local outbox is at its bound (InfluxDB has been away
// or slow for long); the write stored nothing. The HTTP layer answers 503
// with Retry-After.
// It is tsdb.ErrBacklogFull, so that callers need not import this package.
var ErrBacklogFull = tsdb.ErrBacklogFull

// The write path. Every write (operations and session events) is encoded
// as line protocol, with its final point times, and appended to the durable
// outbox (fsynced); only then does the caller wait, up to WriteTimeout, for
// the drainer to deliver it (not at all while InfluxDB is failing: then the
// call returns as soon as its record is durable). The drainer is the single goroutine that sends
// to InfluxDB: it takes the oldest records in order (so a write queues
// behind an outage's backlog), posts them in one request (group commit),
// and acknowledges them in the outbox once InfluxDB took them. A caller
// whose record was delivered in time returns nil with its data visible to
// the next read; one whose record was not returns nil too, since its data
// is durable here and will be delivered. Re-delivery after a crash rewrites
// identical points (same series, time and fields), which InfluxDB makes
// idempotent: exactly-once from an at-least-once outbox.

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

// submit makes lp durable in the outbox and waits, within WriteTimeout of
// the call, for InfluxDB to take it. It answers nil once lp is durable
// (delivered or not), ErrBacklogFull (wrapped) when the outbox is full, and
// an error when InfluxDB rejected the data as invalid.
func (s *Store) submit(ctx context.Context, lp []byte) error {
	start := time.Now()
	defer func() { s.metrics.writeDuration.Observe(time.Since(start).Seconds()) }()
	if len(lp) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return errClosed
	}
	chunks := splitLines(lp, s.cfg.MaxBatchBytes)
	token := s.tokenBase + s.tokenSeq.Add(1)
	w := &waiter{remaining: len(chunks), ch: make(chan error, 1)}
	records := make([][]byte, len(chunks))
	for i, c := range chunks {
		records[i] = encodeRecord(token, c)
	}
	s.waitMu.Lock()
	s.waiters[token] = w
	s.waitMu.Unlock()
	if err := s.ob.Append(records...); err != nil {
		s.forget(token)
		if errors.Is(err, outbox.ErrFull) || errors.Is(err, outbox.ErrTooLarge) {
			s.metrics.writeErrors.WithLabelValues(kindBacklogFull).Inc()
			return fmt.Errorf("%w: %d bytes undelivered (bound %d): %v", ErrBacklogFull, s.ob.Bytes(), s.cfg.OutboxMaxBytes, err)
		}
		s.metrics.writeErrors.WithLabelValues(kindOutbox).Inc()
		return fmt.Errorf("influx: outbox: %w", err)
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
	if s.degraded.Load() {
		// InfluxDB failed the drainer's last attempt: the record queues
		// behind the backlog and waiting would only hold the caller.
		s.forget(token)
		return nil
	}
	timer := time.NewTimer(s.cfg.WriteTimeout - time.Since(start))
	defer timer.Stop()
	select {
	case err := <-w.ch:
		return err
	case <-timer.C:
		// InfluxDB is slower than the write deadline: until the drainer
		// delivers again, later callers return as soon as their data is
		// durable, so that no request waits behind a stalled one.
		s.degraded.Store(true)
	case <-ctx.Done(): // durable already: the caller's data will land
	case <-s.stop:
	}
	s.forget(token)
	return nil
}

func (s *Store) forget(token uint64) {
	s.waitMu.Lock()
	delete(s.waiters, token)
	s.waitMu.Unlock()
}

// releaseWaiters lets every waiting caller return nil: InfluxDB failed,
// their records are durable and will be delivered from the outbox.
func (s *Store) releaseWaiters() {
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	for tok, w := range s.waiters {
		delete(s.waiters, tok)
		w.ch <- nil
	}
}

// settle reports one delivered (err == nil) or rejected record of token.
func (s *Store) settle(token uint64, err error) {
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	w := s.waiters[token]
	if w == nil {
		return
	}
	w.remaining--
	if err != nil || w.remaining == 0 {
		delete(s.waiters, token)
		w.ch <- err
	}
}

// drain is the drainer goroutine.
func (s *Store) drain() {
	defer close(s.drainDone)
	backoff := s.cfg.RetryMin
	// peek adapts how many records one Peek reads, so that it reads about
	// one request's worth (MaxBatchBytes), not 256 large records.
	peek := 16
	pause := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-s.stop:
			return false
		}
	}
	for {
		select {
		case <-s.stop:
			return
		default:
		}
		entries, err := s.ob.Peek(peek)
		if err != nil {
			if errors.Is(err, outbox.ErrClosed) {
				return
			}
			s.log.Error("outbox peek failed", "err", err)
			if !pause(s.cfg.RetryMax) {
				return
			}
			continue
		}
		if len(entries) == 0 {
			select {
			case <-s.ob.Wait():
			case <-s.kick:
			case <-s.stop:
				return
			}
			continue
		}
		// Bound the request body; always take at least one record.
		size, n := 0, 0
		for n < len(entries) && (n == 0 || size+len(entries[n].Data) <= s.cfg.MaxBatchBytes) {
			size += len(entries[n].Data)
			n++
		}
		switch {
		case n < len(entries):
			peek = max(1, n)
		case n == peek && size < s.cfg.MaxBatchBytes/2:
			peek = min(2*peek, 256)
		}
		entries = entries[:n]

		done, retryAfter, results := s.deliver(entries)
		if done > 0 && s.cache != nil {
			// Before any caller hears of it: its next read sees the write.
			s.invalidateDelivered(entries[:done])
		}
		if done > 0 {
			if err := s.ob.Ack(entries[done-1].Seq); err != nil {
				// Not acknowledged: delivered again later, harmlessly.
				s.log.Error("outbox ack failed", "seq", entries[done-1].Seq, "err", err)
				if !pause(backoff) {
					return
				}
				continue
			}
			for i := 0; i < done; i++ {
				if tok, _, err := decodeRecord(entries[i].Data); err == nil {
					s.settle(tok, results[i])
				}
			}
		}
		if done == len(entries) {
			if s.degraded.Swap(false) {
				s.log.Info("influxdb write recovered", "outbox_records", s.ob.Len())
			}
			backoff = s.cfg.RetryMin
			continue
		}
		s.degraded.Store(true)
		s.releaseWaiters()
		wait := max(backoff, min(retryAfter, s.cfg.RetryMax))
		backoff = min(2*backoff, s.cfg.RetryMax)
		if !pause(wait) {
			return
		}
	}
}

// invalidateDelivered drops the cached hours that delivered operations
// fall in (see cache.go).
func (s *Store) invalidateDelivered(entries []outbox.Entry) {
	hours := map[int64]struct{}{}
	var minTime time.Time
	for _, e := range entries {
		if _, lp, err := decodeRecord(e.Data); err == nil {
			deliveredHours(lp, hours, &minTime)
		}
	}
	if len(hours) > 0 {
		s.cache.invalidate(slices.Collect(maps.Keys(hours)), minTime)
	}
}

// deliver sends entries to InfluxDB in order. It answers how many of them,
// from the first, are settled (delivered, or rejected and dead-lettered:
// results[i] holds the rejection), and when the rest should be retried.
func (s *Store) deliver(entries []outbox.Entry) (done int, retryAfter time.Duration, results []error) {
	results = make([]error, len(entries))
	lps := make([][]byte, len(entries))
	for i, e := range entries {
		_, lp, err := decodeRecord(e.Data)
		if err != nil {
			s.deadLetter(e.Data, 0, err.Error())
			results[i] = err
			continue
		}
		lps[i] = lp
	}
	var group func(lo, hi int) (int, time.Duration)
	group = func(lo, hi int) (int, time.Duration) {
		var body []byte
		for i := lo; i < hi; i++ {
			body = append(body, lps[i]...)
		}
		if len(body) == 0 {
			return hi - lo, 0
		}
		werr := s.post(body)
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
			ok, ra := s.postSplit(lps[lo])
			if !ok {
				return 0, ra
			}
			return 1, 0
		default: // one record, rejected as invalid
			s.deadLetter(lps[lo], werr.status, werr.msg)
			results[lo] = fmt.Errorf("influx: InfluxDB rejected the write: %s", werr.Error())
			return 1, 0
		}
	}
	done, retryAfter = group(0, len(entries))
	return done, retryAfter, results
}

// postSplit sends one record too large for InfluxDB in halves (whole
// lines); a single line still too large, or a half rejected as invalid, is
// dead-lettered. ok is false when a half failed in a retryable way.
func (s *Store) postSplit(lp []byte) (ok bool, retryAfter time.Duration) {
	lines := bytes.SplitAfter(lp, []byte("\n"))
	if len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	if len(lines) <= 1 {
		s.deadLetter(lp, http.StatusRequestEntityTooLarge, "a single point larger than InfluxDB accepts")
		return true, 0
	}
	half := 0
	for _, l := range lines[:len(lines)/2] {
		half += len(l)
	}
	for _, part := range [][]byte{lp[:half], lp[half:]} {
		werr := s.post(part)
		switch {
		case werr == nil:
		case werr.retry():
			return false, werr.retryAfter
		case werr.kind == kindTooLarge:
			if ok, ra := s.postSplit(part); !ok {
				return false, ra
			}
		default:
			s.deadLetter(part, werr.status, werr.msg)
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

// post sends one line-protocol body to InfluxDB's v2 write endpoint.
func (s *Store) post(body []byte) *writeErr {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RequestTimeout)
	defer cancel()
	werr := s.doPost(ctx, body)
	if werr != nil {
		s.metrics.writeErrors.WithLabelValues(werr.kind).Inc()
		s.logWriteErr(werr)
		return werr
	}
	s.metrics.batchSize.Observe(float64(bytes.Count(body, []byte("\n"))))
	return nil
}

func (s *Store) doPost(ctx context.Context, body []byte) *writeErr {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.writeURL, bytes.NewReader(body))
	if err != nil {
		return &writeErr{kind: kindNetwork, msg: err.Error()}
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	if s.cfg.Token != "" {
		req.Header.Set("Authorization", "Token "+s.cfg.Token)
	}
	resp, err := s.httpc.Do(req)
	if err != nil {
		return &writeErr{kind: kindNetwork, msg: redact(err.Error(), s.cfg.Token)}
	}
	defer resp.Body.Close()
	s.noteVersion(resp.Header)
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
	e.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return e
}

// parseRetryAfter reads a Retry-After header: seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func redact(s, token string) string {
	if token == "" {
		return s
	}
	return strings.ReplaceAll(s, token, "[token]")
}

// logWriteErr logs a failed write; outages log at warning level once per
// kind change, not once per retry.
func (s *Store) logWriteErr(e *writeErr) {
	s.logMu.Lock()
	repeated := s.lastErrKind == e.kind
	s.lastErrKind = e.kind
	s.logMu.Unlock()
	switch {
	case !e.retry() || e.kind == kindAuth:
		s.log.Error("influxdb write failed", "kind", e.kind, "status", e.status, "err", e.msg)
	case !repeated:
		s.log.Warn("influxdb write failed; retrying from the outbox", "kind", e.kind, "status", e.status,
			"err", e.msg, "outbox_records", s.ob.Len())
	}
}

// deadLetter appends a rejected batch to the dead-letter file (fsynced),
// after a comment line saying when and why.
func (s *Store) deadLetter(lp []byte, status int, msg string) {
	s.dlMu.Lock()
	defer s.dlMu.Unlock()
	f, err := os.OpenFile(s.cfg.DeadLetterPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.log.Error("dead-letter file", "path", s.cfg.DeadLetterPath, "err", err, "lost_bytes", len(lp))
		return
	}
	defer f.Close()
	head := fmt.Sprintf("# rejected %s status=%d %s\n", time.Now().UTC().Format(time.RFC3339),
		status, strings.ReplaceAll(msg, "\n", " "))
	buf := append([]byte(head), lp...)
	if len(lp) > 0 && lp[len(lp)-1] != '\n' {
		buf = append(buf, '\n')
	}
	if _, err := f.Write(buf); err == nil {
		err = f.Sync()
	}
	if err != nil {
		s.log.Error("dead-letter write", "path", s.cfg.DeadLetterPath, "err", err)
		return
	}
	s.log.Error("batch rejected by InfluxDB, moved to the dead-letter file", "path", s.cfg.DeadLetterPath,
		"status", status, "bytes", len(lp))
}

// writeURL answers the v2 write endpoint for cfg.
func writeURL(cfg *Config) string {
	q := url.Values{"bucket": {cfg.Bucket}, "precision": {"ns"}}
	if cfg.Org != "" {
		q.Set("org", cfg.Org)
	}
	return strings.TrimRight(cfg.URL, "/") + "/api/v2/write?" + q.Encode()
}
