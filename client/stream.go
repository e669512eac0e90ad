package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/client/api"
)

// streamIdleTimeout is how long StreamOperations waits without a byte
// before it takes the connection for dead and reconnects: the service
// sends a heartbeat every 15 s.
const streamIdleTimeout = 45 * time.Second

// StreamQuery selects the operations StreamOperations receives (the
// filters of QueryOperations but its window and paging) and where it
// starts. Zero fields do not filter.
type StreamQuery struct {
	SessionID     uuid.UUID
	ToolName      string
	OperationMode string
	ToolID        string
	// After resumes after the operation with this id (one StreamOperations
	// handed over before); zero starts from now.
	After uuid.UUID
	// OnReset is called when the service says operations may have been
	// missed (see StreamResetError); the stream goes on when it answers
	// nil. When OnReset is nil, a reset ends StreamOperations with a
	// *StreamResetError.
	OnReset func(api.StreamReset) error
}

func (q StreamQuery) values() url.Values {
	return OperationQuery{SessionID: q.SessionID, ToolName: q.ToolName, OperationMode: q.OperationMode, ToolID: q.ToolID}.values()
}

// StreamResetError is the service's word that the stream may have missed
// operations: the one to resume after is older than those it keeps
// (api.ResetLastEventUnknown), or a replica lost the other replicas' feed
// for a while (api.ResetReplicaFeedLost). Read what the stream was for
// again from QueryOperations and the aggregates, then stream from now.
type StreamResetError struct {
	Reset api.StreamReset
}

func (e *StreamResetError) Error() string {
	return fmt.Sprintf("GET %s: stream reset (%s): %s", api.PathStreamOperations, e.Reset.Reason, e.Reset.Detail)
}

// errStreamEnded: the service ended the stream (it shut down, or dropped
// this subscriber as too slow); StreamOperations reconnects.
var errStreamEnded = errors.New("the service ended the stream")

// stopStream carries an error that ends StreamOperations without a retry.
type stopStream struct{ err error }

func (e *stopStream) Error() string { return e.err.Error() }

// StreamOperations follows the live stream of accepted operations (GET
// /stream/operations, Server-Sent Events) and calls fn with each operation
// q selects, in the order the service accepted them, until ctx ends (it
// answers ctx's error) or fn answers an error (it answers that error).
//
// When the connection is lost, or the service ends the stream (it shuts
// down, or dropped this client for reading too slowly), StreamOperations
// reconnects with the retry policy's backoff (honouring Retry-After) and
// resumes after the last operation handed to fn, so that none is missed or
// repeated while the service still keeps it (its latest 10,000); when it
// does not, the service says so with a reset (see StreamQuery.OnReset). It
// gives up after the policy's MaxAttempts failed connections in a row,
// answering the last failure, and at once on an answer that no retry
// changes (400, 401). A connection silent for 45 s (the service sends a
// heartbeat every 15 s) is taken for lost. fn runs on the caller's
// goroutine: while it runs, nothing is read.
func (c *Client) StreamOperations(ctx context.Context, q StreamQuery, fn func(ExportedOperation) error) error {
	last := q.After
	failures := 0
	for {
		err := c.streamOnce(ctx, q, &last, &failures, fn)
		if stop := (*stopStream)(nil); errors.As(err, &stop) {
			return stop.err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		failures++
		if failures >= c.retry.MaxAttempts {
			return fmt.Errorf("after %d attempts: %w", failures, err)
		}
		wait := c.retry.backoff(failures, rand.Float64())
		if ae := (*APIError)(nil); errors.As(err, &ae) && ae.RetryAfter > 0 {
			wait = max(wait, min(ae.RetryAfter, c.retry.MaxRetryAfter))
		}
		c.logger.WarnContext(ctx, "stream: reconnecting", "after", last, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// streamOnce runs one connection of StreamOperations. It resets failures
// once the service has taken the subscription, moves last past every
// operation handed to fn, and answers why the connection ended: a
// *stopStream ends StreamOperations.
func (c *Client) streamOnce(ctx context.Context, q StreamQuery, last *uuid.UUID, failures *int, fn func(ExportedOperation) error) error {
	const method, path = http.MethodGet, api.PathStreamOperations
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, method, c.url(path, q.values()), nil)
	if err != nil {
		return &stopStream{fmt.Errorf("%s %s: %w", method, path, err)}
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("User-Agent", c.userAgent)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if *last != uuid.Nil {
		req.Header.Set(api.HeaderLastEventID, last.String())
	}
	// The client's timeout bounds the wait for the answer's headers, then
	// silence bounds the stream.
	watchdog := time.AfterFunc(c.timeout, cancel)
	defer watchdog.Stop()
	resp, err := c.http.Do(req)
	if err != nil {
		return &netError{fmt.Errorf("%s %s: %w", method, path, err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxDetailBytes*8))
		ae := newAPIError(method, path, resp, data)
		if ae.Retryable() {
			return ae
		}
		return &stopStream{ae}
	}
	*failures = 0
	watchdog.Reset(streamIdleTimeout)

	r := bufio.NewReaderSize(resp.Body, 64<<10)
	var event, data []byte
	for {
		line, err := readLine(r)
		if err != nil {
			if ctx.Err() == nil && actx.Err() != nil {
				return &netError{fmt.Errorf("%s %s: no byte for %s", method, path, streamIdleTimeout)}
			}
			if errors.Is(err, io.EOF) {
				return &netError{fmt.Errorf("%s %s: %w", method, path, errStreamEnded)}
			}
			return &netError{fmt.Errorf("%s %s: %w", method, path, err)}
		}
		watchdog.Reset(streamIdleTimeout)
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch {
		case len(line) == 0: // the end of an event
			if err := c.dispatch(string(event), data, q, last, fn); err != nil {
				return err
			}
			event, data = event[:0], data[:0]
		case string(field) == "event":
			event = append(event[:0], value...)
		case string(field) == "data":
			if len(data) > 0 {
				data = append(data, '\n')
			}
			data = append(data, value...)
		}
	}
}

// dispatch hands one event to fn or to q.OnReset.
func (c *Client) dispatch(event string, data []byte, q StreamQuery, last *uuid.UUID, fn func(ExportedOperation) error) error {
	if len(data) == 0 {
		return nil
	}
	switch event {
	case "", "message":
		var op ExportedOperation
		if err := json.Unmarshal(data, &op); err != nil {
			return &stopStream{fmt.Errorf("GET %s: decoding an operation: %w", api.PathStreamOperations, err)}
		}
		if err := fn(op); err != nil {
			return &stopStream{err}
		}
		*last = op.ID
	case api.StreamEventReset:
		var reset api.StreamReset
		if err := json.Unmarshal(data, &reset); err != nil {
			return &stopStream{fmt.Errorf("GET %s: decoding a reset: %w", api.PathStreamOperations, err)}
		}
		if q.OnReset == nil {
			return &stopStream{&StreamResetError{Reset: reset}}
		}
		if err := q.OnReset(reset); err != nil {
			return &stopStream{err}
		}
	}
	return nil
}

// readLine answers the next line without its end (LF, CRLF or CR are all
// line ends in Server-Sent Events; the service sends LF), at most
// maxAnswerBytes long.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxAnswerBytes {
			return nil, fmt.Errorf("an event line longer than %d bytes", maxAnswerBytes)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return nil, err
		}
		line = bytes.TrimSuffix(line[:len(line)-1], []byte("\r"))
		return line, nil
	}
}
