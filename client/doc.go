// Package client is the Go client of omnimemory-metrics, for tools that
// record the LLM tokens they save: typed calls for every endpoint of the
// service's REST API, retries that never count an operation twice, and a
// Batcher for tools that record many operations.
//
// It depends only on the standard library and github.com/google/uuid.
//
// # Usage
//
//	c, err := client.New("http://localhost:8003",
//		client.WithToken(os.Getenv("OMNIMEMORY_API_TOKEN")), // when the service requires one
//		client.WithUserAgent("my-tool/1.2"))
//	if err != nil { ... }
//	s, err := c.GetOrCreateSession(ctx, client.SessionRequest{
//		ToolID: "my-tool", InstanceID: instanceID, ProcessID: os.Getpid()})
//	if err != nil { ... }
//	_, err = c.TrackOperation(ctx, client.Operation{
//		SessionID: s.SessionID, ToolID: "my-tool",
//		ToolName: client.ToolRead, OperationMode: client.ModeOverview,
//		FilePath: "src/main.go", TokensOriginal: 5000, TokensActual: 500,
//		ResponseTimeMs: 12.5,
//	})
//	sv, err := c.APISavings(ctx, client.SavingsQuery{TimeRange: client.Range7d, Compare: client.ComparePrevious})
//	if err != nil { ... }
//	fmt.Printf("saved $%.4f, %+.4f on the week before\n", sv.TotalCostSaved, sv.Change.TotalCostSaved.Absolute)
//
// # Timeouts
//
// Every HTTP attempt is bounded by the client's timeout (WithTimeout,
// default 10s), also when the caller's context has no deadline; the
// caller's context bounds the whole call, retries and their waits included.
// A retry never starts if its wait would outlast the context's deadline: the
// call answers the last error at once.
//
// # Retries and idempotency
//
// A call is retried, up to RetryPolicy.MaxAttempts attempts with
// exponential backoff and jitter, after a transient failure: a network
// error, an attempt timeout, or a 429, 502, 503 or 504 answer. A
// Retry-After of the service is waited out in full, up to
// RetryPolicy.MaxRetryAfter (a longer one ends the call with the
// *APIError). Other answers (400, 401, 404, 413, 422, 500) are never
// retried. Request bodies are encoded once and re-sent byte for byte.
//
// Which calls are retried, and why that is safe:
//
//   - Reads (QueryOperations, ToolBreakdown, APISavings, GetSession,
//     ActiveSessions) change nothing. StreamOperations reconnects after
//     a lost connection and resumes after the last operation it handed
//     over (see its documentation).
//   - TrackOperation and TrackOperations: every operation carries an
//     operation_id, set by the client once, before the first attempt (or by
//     the caller, see NewOperationID). The service stores an id once, so a
//     retry of a request whose answer was lost answers the same id, is
//     flagged Replayed, and is neither stored nor counted again.
//   - Heartbeat only moves last_activity forward; EndSession of an ended
//     session answers it unchanged.
//   - GetOrCreateSession with an InstanceID or a ProcessID: a retry finds
//     the session that a lost attempt opened.
//   - StartSession, and GetOrCreateSession with neither, open a new session
//     every time they reach the service. They are retried only when the
//     service provably did not act: no connection could be made, or it
//     answered 429 or 503. After a timeout, a connection lost once the
//     request was sent, a 502 or a 504, the error is returned.
//   - Health and Ready are probes of the present moment: never retried.
//
// # Errors
//
// An answer outside 2xx is an *APIError with the status, the service's
// detail, the field errors of a 422 (Fields), and any Retry-After:
//
//	var apiErr *client.APIError
//	if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusUnprocessableEntity {
//		for _, f := range apiErr.Fields {
//			log.Printf("%s: %s", f.Field(), f.Msg)
//		}
//	}
//
// IsRetryable tells transient failures from the others; IsNotFound tells an
// unknown session; errors.Is(err, ErrTimeout) an attempt that got no answer
// in time.
//
// # Batching
//
// A Batcher gathers operations and sends them with TrackOperations, in
// requests of up to BatchOptions.MaxOps, at least every FlushInterval, one
// request at a time. It holds at most MaxPending operations: when full, Add
// blocks until room frees up or its context ends (ErrQueueFull), and TryAdd
// answers ErrQueueFull at once. Operations keep the id given when they were
// added, so a flush that is retried (by the client, or by the batcher after
// a transient failure) stores nothing twice. Close sends everything held and
// stops; operations it could not send, and those the service rejected, go to
// OnError.
//
//	b := client.NewBatcher(c, client.BatchOptions{MaxOps: 1000, FlushInterval: time.Second})
//	defer b.Close(ctx) // with a deadline: Close sends what is held
//	for _, op := range ops {
//		if err := b.Add(ctx, op); err != nil { ... }
//	}
package client
