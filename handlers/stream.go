package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/exporter"
)

// defaultStreamWriteTimeout is how long a stream's client has to take each
// write (Options.StreamWriteTimeout): every write moves the connection's
// write deadline (the server's WriteTimeout) this far ahead, so a stream
// outlives the server's timeouts while a client that stops reading is cut
// and counted.
const defaultStreamWriteTimeout = 10 * time.Second

// sseRetryMillis is the reconnection delay a browser's EventSource is told.
const sseRetryMillis = 3000

// retryAfterStream is how long a subscriber refused for the bound on
// subscribers should wait.
const retryAfterStream = 5 * time.Second

// paramsNotStreamed are the list's parameters that mean nothing to a live
// stream: its window and its paging.
var paramsNotStreamed = []string{"start_date", "end_date", "limit", "offset"}

// streamRoutes serve the live stream of operations.
type streamRoutes struct {
	svc          Streamer
	logger       *slog.Logger
	writeTimeout time.Duration
	origins      originPolicy
}

// subscribe reads a stream's parameters, the list's filters and the id to
// resume after, and subscribes. Bad parameters are a 400; the bound on
// subscribers a 503 with Retry-After.
func (h streamRoutes) subscribe(r *http.Request) (*exporter.Subscription, error) {
	q := r.URL.Query()
	for _, name := range paramsNotStreamed {
		if q.Get(name) != "" {
			return nil, badRequest(fmt.Sprintf("%s does not apply to the live stream, which carries operations as the service accepts them: "+
				"list earlier ones with GET %s", name, api.PathOperations))
		}
	}
	f, err := parseOperationFilter(q)
	if err != nil {
		return nil, err
	}
	var after *uuid.UUID
	// The header, which a browser's EventSource sends when it reconnects,
	// is newer than a query parameter in the URL it reconnects to.
	last, name := r.Header.Get(api.HeaderLastEventID), api.HeaderLastEventID
	if last == "" {
		last, name = q.Get("last_event_id"), "last_event_id"
	}
	if last != "" {
		id, ok := api.ParseUUID(strings.TrimSpace(last))
		if !ok {
			return nil, badRequest("Invalid " + name + ": must be the id (a UUID) of an operation the stream sent")
		}
		after = &id
	}
	return h.svc.Subscribe(exporter.StreamFilter{SessionID: f.SessionID, ToolName: f.ToolName,
		OperationMode: f.OperationMode, ToolID: f.ToolID}, after)
}

// whileSubscribed runs abort if sub is dropped as too slow before the
// returned stop is called, so that a handler waiting on a write to a
// client that does not read is cut at once rather than at its write
// timeout. stop waits for abort to have run or been given up, so that
// nothing touches the connection after the handler.
func whileSubscribed(sub *exporter.Subscription, abort func()) (stop func()) {
	finished, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case <-sub.Done():
			if err := sub.Err(); errors.Is(err, exporter.ErrStreamLagging) || errors.Is(err, exporter.ErrStreamWriteTimeout) {
				abort()
			}
		case <-finished:
		}
	}()
	return func() {
		close(finished)
		<-exited
	}
}

// logEnd logs why a stream ended, when the service ended it.
func (h streamRoutes) logEnd(route string, err error) {
	switch {
	case errors.Is(err, exporter.ErrStreamLagging), errors.Is(err, exporter.ErrStreamWriteTimeout):
		h.logger.Info("stream subscriber dropped", "route", route, "err", err)
	case errors.Is(err, exporter.ErrStreamClosed), errors.Is(err, context.Canceled), err == nil:
	default:
		h.logger.Debug("stream ended", "route", route, "err", err)
	}
}

// events serves GET /stream/operations: the live stream as Server-Sent
// Events. Each operation is an event whose id is the operation's and whose
// data is the operation as the list gives it; a reset is an event named
// reset; after the stream's heartbeat interval without an event, a
// comment line. Nothing but the status and a comment is sent until there
// is an event, so a refused subscription gets the usual error answer.
func (h streamRoutes) events(w http.ResponseWriter, r *http.Request) (any, error) {
	sub, err := h.subscribe(r)
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	rc := http.NewResponseController(w)
	// The server's ReadTimeout would end the request's context mid-stream
	// (its watch of the idle connection times out), and its WriteTimeout
	// would cut the answer: each write sets its own deadline instead.
	_ = rc.SetReadDeadline(time.Time{})
	stop := whileSubscribed(sub, func() { _ = rc.SetWriteDeadline(time.Now()) })
	defer stop()
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no") // a proxy that buffers would hold the events back
	w.WriteHeader(http.StatusOK)

	out := fmt.Appendf(nil, "retry: %d\n: subscribed\n\n", sseRetryMillis)
	var evs []*exporter.StreamEvent
	for {
		if err := h.write(w, rc, out); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				sub.Drop()
			}
			h.logEnd(api.PathStreamOperations, err)
			return nil, nil
		}
		evs, err = sub.Next(r.Context(), evs)
		if err != nil {
			h.logEnd(api.PathStreamOperations, err)
			return nil, nil
		}
		out = out[:0]
		if len(evs) == 0 {
			out = append(out, ": heartbeat\n\n"...)
		}
		for _, e := range evs {
			data, err := e.Data()
			if err != nil {
				h.logger.Error("stream event not encoded; left out", "err", err)
				continue
			}
			if e.Operation != nil {
				out = append(out, "id: "...)
				out = append(out, e.Operation.ID.String()...)
			} else {
				out = append(out, "event: "+api.StreamEventReset...)
			}
			out = append(out, "\ndata: "...)
			out = append(out, data...) // compact JSON: one line
			out = append(out, "\n\n"...)
		}
	}
}

// write sends b and flushes it, within the write timeout.
func (h streamRoutes) write(w http.ResponseWriter, rc *http.ResponseController, b []byte) error {
	_ = rc.SetWriteDeadline(time.Now().Add(h.writeTimeout))
	if _, err := w.Write(b); err != nil {
		return err
	}
	return rc.Flush()
}

// websocket serves GET /ws/operations: the live stream over a WebSocket,
// each event an api.StreamMessage in a text message, a heartbeat message
// after the heartbeat interval without one. Messages from the client are
// not expected: one closes the connection. Parameters are checked, and
// the subscription made, before the upgrade, so that their errors are the
// usual answers.
func (h streamRoutes) websocket(w http.ResponseWriter, r *http.Request) (any, error) {
	if !isWebSocketUpgrade(r) {
		w.Header().Set("Upgrade", "websocket")
		return nil, &httpError{status: http.StatusUpgradeRequired,
			detail: "This endpoint takes a WebSocket upgrade (GET with Connection: Upgrade and Upgrade: websocket); GET " + api.PathStreamOperations + " serves the same stream as Server-Sent Events"}
	}
	if origin := r.Header.Get("Origin"); origin != "" && !sameOrigin(origin, r.Host) && !h.origins.allows(origin) {
		return nil, &httpError{status: http.StatusForbidden,
			detail: "Origin " + origin + " may not open this WebSocket: add it to OMNIMEMORY_CORS_ORIGINS"}
	}
	sub, err := h.subscribe(r)
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	// The origin is checked above, against the same origins as CORS.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		h.logger.Debug("websocket handshake failed", "err", err) // Accept answered it
		return nil, nil
	}
	defer c.CloseNow()
	stop := whileSubscribed(sub, func() { _ = c.CloseNow() })
	defer stop()
	ctx := c.CloseRead(r.Context()) // ends when the client closes or sends a message

	var evs []*exporter.StreamEvent
	for {
		evs, err = sub.Next(ctx, evs)
		switch {
		case errors.Is(err, exporter.ErrStreamClosed):
			_ = c.Close(websocket.StatusGoingAway, "the service is shutting down")
		case errors.Is(err, exporter.ErrStreamLagging):
			_ = c.Close(websocket.StatusTryAgainLater, "too slow: resume with last_event_id")
		}
		if err != nil {
			h.logEnd(api.PathWSOperations, err)
			return nil, nil
		}
		if len(evs) == 0 {
			err = h.send(ctx, c, []byte(`{"event":"`+api.StreamEventHeartbeat+`"}`))
		}
		for _, e := range evs {
			if err != nil {
				break
			}
			data, derr := e.Data()
			if derr != nil {
				h.logger.Error("stream event not encoded; left out", "err", derr)
				continue
			}
			err = h.send(ctx, c, wsMessage(e, data))
		}
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				sub.Drop()
			}
			h.logEnd(api.PathWSOperations, err)
			return nil, nil
		}
	}
}

// send writes one text message within the write timeout.
func (h streamRoutes) send(ctx context.Context, c *websocket.Conn, msg []byte) error {
	ctx, cancel := context.WithTimeout(ctx, h.writeTimeout)
	defer cancel()
	return c.Write(ctx, websocket.MessageText, msg)
}

// wsMessage answers the api.StreamMessage of e, whose data is data.
func wsMessage(e *exporter.StreamEvent, data []byte) []byte {
	msg := make([]byte, 0, len(data)+80)
	if e.Operation != nil {
		msg = append(msg, `{"event":"`+api.StreamEventOperation+`","id":"`...)
		msg = append(msg, e.Operation.ID.String()...)
		msg = append(msg, `","data":`...)
	} else {
		msg = append(msg, `{"event":"`+api.StreamEventReset+`","data":`...)
	}
	msg = append(msg, data...)
	return append(msg, '}')
}

// isWebSocketUpgrade reports whether r asks for a WebSocket.
func isWebSocketUpgrade(r *http.Request) bool {
	hasToken := func(header, token string) bool {
		for _, v := range r.Header.Values(header) {
			for part := range strings.SplitSeq(v, ",") {
				if strings.EqualFold(strings.TrimSpace(part), token) {
					return true
				}
			}
		}
		return false
	}
	return hasToken("Connection", "upgrade") && hasToken("Upgrade", "websocket")
}

// sameOrigin reports whether origin names the host the request was sent
// to (a page of the service itself, such as the built-in one).
func sameOrigin(origin, host string) bool {
	_, h, ok := strings.Cut(origin, "://")
	return ok && strings.EqualFold(h, host)
}
