package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// The feed of committed operations between replicas. A store opened with
// Config.Announce sends, in the transaction that stores operations (so
// that PostgreSQL delivers it only once they are committed, and never for
// a write that failed), a NOTIFY on feedChannel per at most
// maxPayloadEntries of them: the writing store's origin and each
// operation's id and created_at. Every store's FollowOperations LISTENs on
// a connection of its own, skips its own origin, and reads the announced
// rows by created_at and id (the partitions' index) from the pool. Ids
// rather than the operations travel because a payload is limited to 8000
// bytes, which an operation's parameters alone may exceed.
const (
	feedChannel = "omnimemory_operations"
	// feedVersion opens every payload, so that a later format is told
	// apart rather than misread.
	feedVersion = "1"
	// maxPayloadBytes keeps a payload under PostgreSQL's 8000 bytes.
	maxPayloadBytes = 7900
	// feedIdleCheck is how long the listening connection may stay silent
	// before it is pinged, so that a server gone without a word (a
	// half-open connection) is noticed.
	feedIdleCheck = 30 * time.Second
	// feedPingTimeout bounds that ping and the LISTEN.
	feedPingTimeout = 5 * time.Second
	// feedMaxBackoff bounds the wait between reconnections.
	feedMaxBackoff = 5 * time.Second
	// feedApplication names the listening connection in pg_stat_activity.
	feedApplication = "omnimemory-metrics feed"
)

// newOrigin answers a random name for a store value: the origin of its
// announcements.
func newOrigin() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// announcePayloads answers the NOTIFY payloads announcing ops from origin:
// "1 <origin> <id>:<created_at in unix microseconds> ...", each under
// maxPayloadBytes.
func announcePayloads(origin string, ops []tsdb.Operation) []string {
	var payloads []string
	var b []byte
	for i := range ops {
		if len(b) == 0 {
			b = append(b, feedVersion+" "+origin...)
		}
		b = append(b, ' ')
		b = hex.AppendEncode(b, ops[i].ID[:])
		b = append(b, ':')
		b = strconv.AppendInt(b, ops[i].CreatedAt.UnixMicro(), 10)
		if len(b) > maxPayloadBytes-60 { // room for one more entry
			payloads = append(payloads, string(b))
			b = b[:0]
		}
	}
	if len(b) > 0 {
		payloads = append(payloads, string(b))
	}
	return payloads
}

// announced is one payload, read back.
type announced struct {
	origin  string
	ids     []uuid.UUID
	created []time.Time
}

func parsePayload(p string) (announced, error) {
	fields := strings.Fields(p)
	if len(fields) < 2 || fields[0] != feedVersion {
		return announced{}, fmt.Errorf("payload %.40q: not of version %s", p, feedVersion)
	}
	a := announced{origin: fields[1], ids: make([]uuid.UUID, 0, len(fields)-2), created: make([]time.Time, 0, len(fields)-2)}
	for _, f := range fields[2:] {
		idHex, micros, ok := strings.Cut(f, ":")
		var id uuid.UUID
		n, err := hex.Decode(id[:], []byte(idHex))
		us, err2 := strconv.ParseInt(micros, 10, 64)
		if !ok || err != nil || n != len(id) || len(idHex) != 2*len(id) || err2 != nil {
			return announced{}, fmt.Errorf("payload entry %q: want <id>:<microseconds>", f)
		}
		a.ids = append(a.ids, id)
		a.created = append(a.created, fromMicros(us))
	}
	return a, nil
}

// announceSQL sends one notification per payload.
const announceSQL = `SELECT pg_notify('` + feedChannel + `', p) FROM unnest($1::text[]) AS p`

// fetchAnnouncedSQL reads announced operations where they are, staged or
// moved (one statement sees a move whole or not at all: see pending.go):
// created_at and id reach each partition's (created_at, id) index, and an
// id is unique, so no other row matches.
var fetchAnnouncedSQL = `SELECT ` + opColumnList + ` FROM tool_operations
WHERE created_at = ANY($1::timestamptz[]) AND id = ANY($2::uuid[])
UNION ALL
SELECT ` + opColumnList + ` FROM pending_operations WHERE id = ANY($2::uuid[])`

// FollowOperations calls deliver with the operations that other store
// values (other replicas) announced (see Config.Announce), in the order
// of their commits' notifications, until ctx ends. It listens on a
// connection of its own, pinged after feedIdleCheck of silence; when that
// connection fails it calls lost once and reconnects with backoff (up to
// feedMaxBackoff): operations announced until it listens again are not
// delivered, nor are those whose rows could not be read (lost is told
// then too).
func (s *Store) FollowOperations(ctx context.Context, deliver func([]tsdb.Operation), lost func(error)) error {
	healthy := true // a failure before the first LISTEN is an interruption too
	backoff := 100 * time.Millisecond
	for {
		err := s.listen(ctx, deliver, lost, func() {
			healthy, backoff = true, 100*time.Millisecond
		})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if healthy {
			healthy = false
			lost(s.wrap("follow operations", err))
		}
		s.logger.Warn("replica feed: reconnecting", "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, feedMaxBackoff)
	}
}

// listen connects, LISTENs (then calls listening) and delivers what is
// announced until the connection fails or ctx ends.
func (s *Store) listen(ctx context.Context, deliver func([]tsdb.Operation), lost func(error), listening func()) error {
	if s.closed.Load() {
		return errClosed
	}
	cfg := s.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = feedApplication
	conn, err := pgx.ConnectConfig(ctx, cfg) // bounded by the connect timeout
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), feedPingTimeout)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	lctx, cancel := context.WithTimeout(ctx, feedPingTimeout)
	_, err = conn.Exec(lctx, "LISTEN "+feedChannel)
	cancel()
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	listening()
	for {
		wctx, cancel := context.WithTimeout(ctx, feedIdleCheck)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil && pgconn.Timeout(err):
			// Silence: make sure the server is still there.
			pctx, cancel := context.WithTimeout(ctx, feedPingTimeout)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
			continue
		case err != nil:
			return fmt.Errorf("wait for notification: %w", err)
		}
		a, err := parsePayload(n.Payload)
		if err != nil {
			s.logger.Warn("replica feed: notification not understood; ignored", "err", err)
			continue
		}
		if a.origin == s.origin || len(a.ids) == 0 {
			continue
		}
		ops, err := s.fetchAnnounced(ctx, a)
		if len(ops) > 0 {
			deliver(ops)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			lost(s.wrap(fmt.Sprintf("read %d announced operations", len(a.ids)), err))
		}
	}
}

// fetchAnnounced reads the announced operations, in the announcement's
// order; it answers those it found, and an error when it did not find
// them all.
func (s *Store) fetchAnnounced(ctx context.Context, a announced) ([]tsdb.Operation, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, fetchAnnouncedSQL, a.created, uuidArray(a.ids))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	byID := make(map[uuid.UUID]tsdb.Operation, len(a.ids))
	for rows.Next() {
		op, err := scanOperation(rows)
		if err != nil {
			return nil, err
		}
		byID[op.ID] = op
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	ops := make([]tsdb.Operation, 0, len(a.ids))
	for _, id := range a.ids {
		if op, ok := byID[id]; ok {
			ops = append(ops, op)
		}
	}
	if len(ops) < len(a.ids) {
		return ops, fmt.Errorf("%d of %d announced operations not found", len(a.ids)-len(ops), len(a.ids))
	}
	return ops, nil
}
