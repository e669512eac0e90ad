package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"
)

// DefaultTimeout bounds one HTTP attempt when WithTimeout is not given.
const DefaultTimeout = 10 * time.Second

// DefaultUserAgent is sent when WithUserAgent is not given.
const DefaultUserAgent = "omnimemory-metrics-go-client/1"

// maxAnswerBytes bounds an answer body the client reads (a full page of
// 1,000 operations with large parameters fits easily).
const maxAnswerBytes = 64 << 20

// Client calls one omnimemory-metrics service. It is safe for concurrent use;
// make one and share it.
type Client struct {
	base      *url.URL
	http      *http.Client
	token     string
	timeout   time.Duration
	retry     RetryPolicy
	userAgent string
	logger    *slog.Logger
}

// RetryPolicy says how often and how patiently a call is repeated after a
// transient failure (see the package documentation for which failures and
// which calls). Zero fields take the defaults.
type RetryPolicy struct {
	// MaxAttempts counts every attempt, the first included (default 4);
	// 1 turns retries off.
	MaxAttempts int
	// InitialBackoff is the wait before the first retry (default 250ms);
	// each further wait is Multiplier times longer (default 2), up to
	// MaxBackoff (default 5s).
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	Multiplier     float64
	// Jitter is the fraction of each wait drawn at random, so that many
	// clients failing together do not retry together: a wait d becomes a
	// random duration in [d*(1-Jitter), d]. Default 0.5; 1 is "full
	// jitter"; a negative value turns jitter off.
	Jitter float64
	// MaxRetryAfter is the longest Retry-After the client waits for
	// (default 30s). A server asking for a longer pause ends the retries:
	// the call answers the *APIError, whose RetryAfter tells the caller when
	// to come back. A shorter Retry-After is always waited out in full.
	MaxRetryAfter time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 4
	}
	if p.InitialBackoff <= 0 {
		p.InitialBackoff = 250 * time.Millisecond
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = 5 * time.Second
	}
	p.MaxBackoff = max(p.MaxBackoff, p.InitialBackoff)
	if p.Multiplier < 1 {
		p.Multiplier = 2
	}
	switch {
	case p.Jitter == 0:
		p.Jitter = 0.5
	case p.Jitter < 0:
		p.Jitter = 0
	case p.Jitter > 1:
		p.Jitter = 1
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = 30 * time.Second
	}
	return p
}

// backoff answers the wait before retry number n (1 for the first retry);
// r is a random number in [0, 1).
func (p RetryPolicy) backoff(n int, r float64) time.Duration {
	d := float64(p.InitialBackoff) * math.Pow(p.Multiplier, float64(n-1))
	d = min(d, float64(p.MaxBackoff))
	return time.Duration(d - d*p.Jitter*r)
}

// Option configures a Client.
type Option func(*Client)

// WithToken sends "Authorization: Bearer <token>" on every call (the
// service's OMNIMEMORY_API_TOKEN). The token is never logged.
func WithToken(token string) Option {
	return func(c *Client) { c.token = token }
}

// WithHTTPClient sends requests through hc (for a proxy, TLS settings or
// instrumentation). Its Timeout, if any, applies besides the client's own.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.http = hc }
}

// WithTimeout bounds every HTTP attempt (default DefaultTimeout), whether
// or not the caller's context has a deadline of its own.
func WithTimeout(d time.Duration) Option {
	return func(c *Client) { c.timeout = d }
}

// WithRetry sets the retry policy; zero fields keep their defaults.
func WithRetry(p RetryPolicy) Option {
	return func(c *Client) { c.retry = p }
}

// WithUserAgent sets the User-Agent header, so that the service's logs can
// tell tools apart.
func WithUserAgent(ua string) Option {
	return func(c *Client) { c.userAgent = ua }
}

// WithLogger logs retries (at Warn) to logger; by default nothing is logged.
func WithLogger(logger *slog.Logger) Option {
	return func(c *Client) { c.logger = logger }
}

// New answers a client of the service at baseURL (for example
// "http://localhost:8003"; a path prefix is kept, for a service behind a
// reverse proxy).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(baseURL))
	if err != nil {
		return nil, fmt.Errorf("client: base URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: base URL %q: want http:// or https:// and a host", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("client: base URL %q: must have no query or fragment", baseURL)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	c := &Client{base: u, timeout: DefaultTimeout, userAgent: DefaultUserAgent}
	for _, o := range opts {
		o(c)
	}
	if c.timeout <= 0 {
		return nil, fmt.Errorf("client: timeout %s: must be positive", c.timeout)
	}
	if c.http == nil {
		c.http = &http.Client{}
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if strings.ContainsAny(c.token, "\r\n") {
		return nil, errors.New("client: token must be one line")
	}
	c.retry = c.retry.withDefaults()
	return c, nil
}

// retryClass says when a call may be sent again.
type retryClass int

const (
	// retryNever: probes answer the state of one moment.
	retryNever retryClass = iota
	// retryIdempotent: repeating the call changes nothing more than sending
	// it once (reads, and writes the server dedupes).
	retryIdempotent
	// retryUnsent: repeating the call could act twice, so it is repeated
	// only when the server provably did not act on it.
	retryUnsent
)

// call is one API call.
type call struct {
	method, path string
	query        url.Values
	body         []byte // nil: no body
	key          string // Idempotency-Key header, when not empty
	class        retryClass
	out          any // the 2xx answer is decoded into out when not nil
}

// do runs c with retries and answers the headers of the successful answer.
func (c *Client) do(ctx context.Context, cl call) (http.Header, error) {
	attempts := c.retry.MaxAttempts
	if cl.class == retryNever {
		attempts = 1
	}
	for attempt := 1; ; attempt++ {
		hdr, unsent, err := c.attempt(ctx, cl)
		if err == nil {
			return hdr, nil
		}
		if ctx.Err() != nil || attempt >= attempts || !retryable(cl.class, err, unsent) {
			if attempt > 1 {
				err = fmt.Errorf("after %d attempts: %w", attempt, err)
			}
			return nil, err
		}
		wait := c.retry.backoff(attempt, rand.Float64())
		if ae := (*APIError)(nil); errors.As(err, &ae) && ae.RetryAfter > 0 {
			if ae.RetryAfter > c.retry.MaxRetryAfter {
				return nil, fmt.Errorf("after %d attempts: %w", attempt, err)
			}
			wait = max(wait, ae.RetryAfter)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			// The wait would outlast the caller's patience: answer now.
			return nil, fmt.Errorf("after %d attempts: %w", attempt, err)
		}
		c.logger.WarnContext(ctx, "retrying request", "method", cl.method, "path", cl.path,
			"attempt", attempt, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("after %d attempts: %w; stopped waiting to retry: %w", attempt, err, ctx.Err())
		case <-t.C:
		}
	}
}

// retryable answers whether err of a call of class may be retried; unsent
// says the request provably never reached the server.
func retryable(class retryClass, err error, unsent bool) bool {
	switch class {
	case retryIdempotent:
		return IsRetryable(err)
	case retryUnsent:
		if ae := (*APIError)(nil); errors.As(err, &ae) {
			// The server (or a proxy) refused the request without acting.
			return ae.StatusCode == http.StatusTooManyRequests || ae.StatusCode == http.StatusServiceUnavailable
		}
		return unsent && IsRetryable(err)
	}
	return false
}

// attempt sends cl once. unsent reports that the request never reached the
// server (no connection was made).
func (c *Client) attempt(ctx context.Context, cl call) (hdr http.Header, unsent bool, err error) {
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var gotConn, dialFailed atomic.Bool
	actx = httptrace.WithClientTrace(actx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { gotConn.Store(true) },
		ConnectDone: func(_, _ string, err error) {
			if err != nil {
				dialFailed.Store(true)
			}
		},
		DNSDone: func(i httptrace.DNSDoneInfo) {
			if i.Err != nil {
				dialFailed.Store(true)
			}
		},
	})
	var body io.Reader
	if cl.body != nil {
		body = bytes.NewReader(cl.body)
	}
	req, err := http.NewRequestWithContext(actx, cl.method, c.url(cl.path, cl.query), body)
	if err != nil {
		return nil, false, fmt.Errorf("%s %s: %w", cl.method, cl.path, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if cl.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if cl.key != "" {
		req.Header.Set(api.HeaderIdempotencyKey, cl.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		unsent = !gotConn.Load() && (dialFailed.Load() || isDialError(err))
		return nil, unsent, c.transportError(ctx, actx, cl, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return nil, false, c.transportError(ctx, actx, cl, fmt.Errorf("reading the answer: %w", err))
	}
	if len(data) > maxAnswerBytes {
		return nil, false, fmt.Errorf("%s %s: answer larger than %d bytes", cl.method, cl.path, maxAnswerBytes)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, false, newAPIError(cl.method, cl.path, resp, data)
	}
	if cl.out != nil {
		if err := json.Unmarshal(data, cl.out); err != nil {
			return nil, false, fmt.Errorf("%s %s: decoding the answer: %w", cl.method, cl.path, err)
		}
	}
	return resp.Header, false, nil
}

// transportError wraps a failure to get an answer: an attempt that ran out
// of its own time is ErrTimeout; the caller's context ending is its error.
func (c *Client) transportError(ctx, actx context.Context, cl call, err error) error {
	if ctx.Err() == nil && errors.Is(actx.Err(), context.DeadlineExceeded) {
		return &netError{fmt.Errorf("%s %s: %w after %s (%w)", cl.method, cl.path, ErrTimeout, c.timeout, context.DeadlineExceeded)}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s %s: %w", cl.method, cl.path, err)
	}
	return &netError{fmt.Errorf("%s %s: %w", cl.method, cl.path, err)}
}

// isDialError reports a failure to open a connection (refused, no route,
// unknown host): the request was not sent.
func isDialError(err error) bool {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return true
	}
	var de *net.DNSError
	return errors.As(err, &de)
}

// url answers the address of path with query under the base URL.
func (c *Client) url(path string, query url.Values) string {
	u := *c.base
	u.Path = c.base.Path + path
	u.RawQuery = query.Encode()
	return u.String()
}

// postJSON sends v as the JSON body of a POST.
func (c *Client) postJSON(ctx context.Context, path string, v any, class retryClass, key string, out any) (http.Header, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("POST %s: encoding the request: %w", path, err)
	}
	return c.do(ctx, call{method: http.MethodPost, path: path, body: body, key: key, class: class, out: out})
}

// get sends a GET with query and decodes the answer into out.
func (c *Client) get(ctx context.Context, path string, query url.Values, class retryClass, out any) error {
	_, err := c.do(ctx, call{method: http.MethodGet, path: path, query: query, class: class, out: out})
	return err
}

// Health calls GET /health: nil while the service serves. It is a probe, so
// it is never retried.
func (c *Client) Health(ctx context.Context) error {
	return c.get(ctx, api.PathHealth, nil, retryNever, nil)
}

// Ready calls GET /ready: nil when the service's store answers, else the
// *APIError (503, with the service's detail). It is a probe, so it is never
// retried.
func (c *Client) Ready(ctx context.Context) error {
	return c.get(ctx, api.PathReady, nil, retryNever, nil)
}
