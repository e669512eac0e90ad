package tsdb

import "context"

// OperationFeed is what a store shared by several replicas of the service
// (PostgreSQL) offers so that each replica learns of the operations the
// others commit, and every replica's live stream carries them all. A store
// that one process owns (SQLite), or whose writes are not announced to
// other processes (InfluxDB), does not implement it: its replica's stream
// carries that replica's own operations only.
type OperationFeed interface {
	// FollowOperations calls deliver, from one goroutine, with the
	// operations that other processes committed through this store's
	// announcing writes, in the order their commits were announced, until
	// ctx ends; it then answers ctx's error. What this store value wrote
	// itself is not delivered: its own process publishes that. deliver may
	// not keep ops after it returns. When the feed is interrupted (its
	// connection lost) FollowOperations calls lost with the cause and
	// reconnects with backoff: operations announced while it was away are
	// never delivered, which is why lost is told.
	FollowOperations(ctx context.Context, deliver func(ops []Operation), lost func(err error)) error
}
