package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
)

// errNotLoopback: this tool sends traffic to loopback addresses only.
var errNotLoopback = errors.New("omnimemory-load only connects to loopback addresses (127.0.0.1)")

// loopbackOnly is a net.Dialer Control that refuses any address that is not
// a loopback address, whatever a URL or a resolver says.
func loopbackOnly(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: %s", errNotLoopback, address)
	}
	return nil
}

// checkURL validates a base URL given on the command line.
func checkURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return "", usagef("--url must be an http:// URL, not %q", raw)
	}
	switch h := u.Hostname(); h {
	case "localhost":
	default:
		if ip := net.ParseIP(h); ip == nil || !ip.IsLoopback() {
			return "", usagef("--url: %v", errNotLoopback)
		}
	}
	return u.Scheme + "://" + u.Host, nil
}

// newClient answers a keep-alive client for conns concurrent connections to
// one host, every call bounded by timeout.
func newClient(conns int, timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second, Control: loopbackOnly}
	idle := max(conns, 32)
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:                 nil, // loopback only: never a proxy from the environment
			DialContext:           d.DialContext,
			MaxIdleConns:          2 * idle,
			MaxIdleConnsPerHost:   idle,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: timeout,
			DisableCompression:    true,
		},
	}
}

// httpError is an unexpected answer.
type httpError struct {
	code       int
	body       string
	retryAfter time.Duration
}

func (e *httpError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.code, e.body) }

// do sends one request and reads the whole answer (so the connection is
// reused); any status but want is an *httpError.
func do(ctx context.Context, c *http.Client, method, url, ctype string, body []byte, want int) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		he := &httpError{code: resp.StatusCode, body: string(bytes.TrimSpace(b[:min(len(b), 300)]))}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			he.retryAfter = time.Duration(s) * time.Second
		}
		return nil, he
	}
	return b, nil
}

// ingestResult is the outcome of one load phase.
type ingestResult struct {
	Name        string       `json:"name"`
	Connections int          `json:"connections"`
	BatchSize   int          `json:"batch_size"`
	Requests    int64        `json:"requests"`
	Operations  int64        `json:"operations"`
	Errors      int64        `json:"errors"`
	FirstError  string       `json:"first_error,omitempty"`
	Seconds     float64      `json:"seconds"`
	OpsPerSec   float64      `json:"ops_per_sec"`
	Latency     latencyStats `json:"latency"`
	Stopped     string       `json:"stopped"` // what ended the phase: "count", "time", "errors" or "interrupted"
}

// loadSpec is one load phase: requests sent by conns workers until
// maxRequests were sent or maxTime passed, whichever comes first.
type loadSpec struct {
	name        string
	conns       int
	maxRequests int64
	maxTime     time.Duration
	opsPerReq   int
	maxErrors   int64 // the phase stops after this many failed requests
	spinner     bool  // bounded by time in practice: a spinner with count and rate, not a bar
	progress    io.Writer
	send        sendFunc
}

// sendFunc sends request seq of a load phase on the connection of worker;
// it answers the operations it stored.
type sendFunc func(ctx context.Context, worker int, seq int64) (int, error)

// runLoad runs one phase with a progress bar (operations done; a spinner
// when the phase is bounded by time rather than count).
func runLoad(ctx context.Context, s loadSpec) ingestResult {
	barMax := s.maxRequests * int64(s.opsPerReq)
	if s.spinner {
		barMax = -1
	}
	bar := newBar(s.progress, barMax, s.name)
	res := ingestResult{Name: s.name, Connections: s.conns, BatchSize: s.opsPerReq}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if s.maxTime > 0 {
		var c context.CancelFunc
		ctx, c = context.WithTimeout(ctx, s.maxTime)
		defer c()
	}
	var (
		next     atomic.Int64
		ops      atomic.Int64
		reqs     atomic.Int64
		errs     atomic.Int64
		mu       sync.Mutex
		lat      []time.Duration
		firstErr string
		wg       sync.WaitGroup
	)
	start := time.Now()
	for w := range s.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1024)
			for ctx.Err() == nil {
				seq := next.Add(1) - 1
				if seq >= s.maxRequests {
					break
				}
				t0 := time.Now()
				n, err := s.send(ctx, w, seq)
				d := time.Since(t0)
				if err != nil {
					if ctx.Err() != nil {
						break // the deadline cut the request: neither success nor error
					}
					if errs.Add(1) == 1 {
						mu.Lock()
						firstErr = err.Error()
						mu.Unlock()
					}
					if errs.Load() >= s.maxErrors {
						cancel()
					}
					continue
				}
				reqs.Add(1)
				ops.Add(int64(n))
				local = append(local, d)
				_ = bar.Add(n)
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if s.spinner || next.Load() >= s.maxRequests && ctx.Err() == nil {
		_ = bar.Finish()
	} else {
		_ = bar.Exit() // stopped short: leave the bar where it stopped
	}
	fmt.Fprintln(s.progress)

	res.Requests, res.Operations, res.Errors, res.FirstError = reqs.Load(), ops.Load(), errs.Load(), firstErr
	res.Seconds = elapsed.Seconds()
	if elapsed > 0 {
		res.OpsPerSec = float64(res.Operations) / elapsed.Seconds()
	}
	res.Latency = summarize(lat)
	switch {
	case res.Errors >= s.maxErrors:
		res.Stopped = "errors"
	case next.Load() >= s.maxRequests && ctx.Err() == nil:
		res.Stopped = "count"
	case errors.Is(context.Cause(ctx), context.DeadlineExceeded):
		res.Stopped = "time"
	default:
		res.Stopped = "interrupted"
	}
	return res
}

func newBar(w io.Writer, max int64, desc string) *progressbar.ProgressBar {
	return newBarUnit(w, max, desc, "ops")
}

// newBarUnit makes a progress bar. Its spinner is turned off: for a bar of
// unknown length (a run bounded by time) the library animates it from a
// goroutine of its own that reads the bar's state without its lock (a data
// race with Add); the spinner frame then moves with each Add instead.
func newBarUnit(w io.Writer, max int64, desc, unit string) *progressbar.ProgressBar {
	return progressbar.NewOptions64(max,
		progressbar.OptionSetSpinnerChangeInterval(0),
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString(unit),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(max > 0),
		progressbar.OptionShowElapsedTimeOnFinish(),
	)
}

// singleSender posts one operation per request, cycling through bodies.
func singleSender(c *http.Client, base string, bodies [][]byte) sendFunc {
	url := base + "/track/tool-operation"
	return func(ctx context.Context, _ int, seq int64) (int, error) {
		b, err := do(ctx, c, http.MethodPost, url, "application/json", bodies[seq%int64(len(bodies))], http.StatusOK)
		if err != nil {
			return 0, err
		}
		if !bytes.Contains(b, []byte(`"operation_id"`)) {
			return 0, fmt.Errorf("unexpected answer %.200s", b)
		}
		return 1, nil
	}
}

// singleBodies builds n distinct single-operation bodies (no created_at: the
// service stamps them now).
func singleBodies(seed uint64, n int) [][]byte {
	g := newGenerator(seed, time.Time{}, 0)
	r := batchRand(seed, -1)
	out := make([][]byte, n)
	for i := range out {
		o := g.next(r, 0)
		out[i] = o.appendJSON(nil)
	}
	return out
}

// batchSender posts batch seq (of sizeOf(seq) operations) to url, built by
// build; a 503 (the service sheds load) is retried after its Retry-After,
// at most 20 times.
func batchSender(c *http.Client, url, ctype string, want int, sizeOf func(seq int64) int, build func(b []byte, seq int64, n int) []byte) sendFunc {
	var pool sync.Pool
	return func(ctx context.Context, _ int, seq int64) (int, error) {
		bp, _ := pool.Get().(*[]byte)
		if bp == nil {
			bp = new([]byte)
		}
		defer pool.Put(bp)
		size := sizeOf(seq)
		*bp = build((*bp)[:0], seq, size)
		for attempt := 0; ; attempt++ {
			_, err := do(ctx, c, http.MethodPost, url, ctype, *bp, want)
			var he *httpError
			if err == nil {
				return size, nil
			}
			if !errors.As(err, &he) || (he.code != http.StatusServiceUnavailable && he.code != http.StatusTooManyRequests) || attempt >= 20 {
				return 0, err
			}
			wait := min(max(he.retryAfter, 100*time.Millisecond), 2*time.Second)
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(wait):
			}
		}
	}
}
