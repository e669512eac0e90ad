package handlers

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"
)

// Lingering close. A server that answers 413 and closes the connection while
// the client is still sending its body resets the connection (TCP RST on
// unread data), and a client that writes its whole body before reading
// (Python's urllib, most scripts) then sees "connection reset" instead of
// the answer. So, as nginx's lingering close does, the server answers first
// and then reads and discards what the client still sends, within these
// bounds, before closing.
const (
	lingerMaxBytes = 64 << 20         // discarded at most
	lingerMaxTime  = 10 * time.Second // in all
	lingerIdle     = 2 * time.Second  // without a byte from the client
)

// bodyLimit answers the body limit of r's route.
func bodyLimit(r *http.Request) int64 {
	switch r.URL.Path {
	case api.PathTrackOperations:
		return api.MaxBatchBodyBytes
	case api.PathOTLPMetrics:
		return api.MaxOTLPBodyBytes
	}
	return api.MaxBodyBytes
}

// limitBody answers 413 to a body declared larger than its route's limit
// before anything else, and caps a body of undeclared length (chunked) so
// that reading past the limit fails with *http.MaxBytesError. Either way the
// rest of an oversized body is read and discarded after the answer (see
// lingerMaxBytes), so that the client gets its 413.
func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := bodyLimit(r)
		switch {
		case r.ContentLength > limit:
			rc := http.NewResponseController(w)
			_ = rc.EnableFullDuplex() // read the body after answering
			w.Header().Set("Connection", "close")
			he := errTooLarge(limit)
			writeDetail(w, he.status, he.detail, 0)
			_ = rc.Flush()
			// A client that asked "Expect: 100-continue" was answered
			// without a 100 and sends no body: nothing to wait for.
			if !strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
				linger(rc, r)
			}
		case r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody:
			rc := http.NewResponseController(w)
			_ = rc.EnableFullDuplex()
			// Past the limit the connection is closed after the answer:
			// the rest of the body is never parsed as another request.
			capped := &cappedBody{body: r.Body, left: limit, limit: limit, header: w.Header()}
			r.Body = capped
			next.ServeHTTP(w, r)
			if capped.exceeded {
				// The body was being read, so a 100 Continue (if asked
				// for) went out and the client is sending: linger.
				_ = rc.Flush()
				r.Body = capped.body
				linger(rc, r)
			}
		default: // the declared length, within the limit, bounds the body
			next.ServeHTTP(w, r)
		}
	})
}

// linger reads and discards the rest of r's body, within the lingering
// bounds, on a connection the answer told the client is closing.
func linger(rc *http.ResponseController, r *http.Request) {
	deadline := time.Now().Add(lingerMaxTime)
	buf := make([]byte, 32<<10)
	for read := 0; read < lingerMaxBytes; {
		next := time.Now().Add(lingerIdle)
		if next.After(deadline) {
			next = deadline
		}
		_ = rc.SetReadDeadline(next)
		n, err := r.Body.Read(buf)
		read += n
		if err != nil || time.Now().After(deadline) {
			break
		}
	}
}

// cappedBody fails reads past limit with *http.MaxBytesError, as
// http.MaxBytesReader does, and then marks the answer "Connection: close"
// (header is the response's, not yet written), but without closing the
// connection at once: limitBody lingers on it first.
type cappedBody struct {
	body        io.ReadCloser
	left, limit int64
	header      http.Header
	exceeded    bool
}

func (c *cappedBody) Read(p []byte) (int, error) {
	if c.exceeded {
		return 0, &http.MaxBytesError{Limit: c.limit}
	}
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1] // one byte more tells a body at the limit from one past it
	}
	n, err := c.body.Read(p)
	if int64(n) > c.left {
		c.exceeded = true
		c.header.Set("Connection", "close")
		return int(c.left), &http.MaxBytesError{Limit: c.limit}
	}
	c.left -= int64(n)
	return n, err
}

func (c *cappedBody) Close() error { return c.body.Close() }

// readBody reads the whole body, capped by limitBody.
func readBody(r *http.Request) ([]byte, error) {
	data, err := io.ReadAll(r.Body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, errTooLarge(mbe.Limit)
	}
	if err != nil {
		return nil, badRequest("Could not read the request body: " + err.Error())
	}
	return data, nil
}

// errTooLarge answers a body over the limit of its route.
func errTooLarge(limit int64) *httpError {
	return &httpError{status: http.StatusRequestEntityTooLarge, detail: fmt.Sprintf("Request body too large: at most %d bytes", limit)}
}
