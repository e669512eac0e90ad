package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
)

// postgresSettings are the server settings of the bench's PostgreSQL, for a
// small machine: durability as in production (fsync, full-page writes and
// synchronous commit on: a 200 means the operation survives a crash, as on
// the embedded store), 256 MB of shared buffers (less than 2,000,000
// operations and their indexes take: the rest is in the kernel's page
// cache, as the embedded store's file is), and WAL room for the whole batch
// phase, so that no checkpoint forced by WAL volume lands in it, kept
// (min_wal_size) once warmWAL has written it.
var postgresSettings = []string{
	"fsync=on", "full_page_writes=on", "synchronous_commit=on",
	"shared_buffers=256MB", "max_wal_size=4GB", "min_wal_size=" + strconv.Itoa(walWarmSegments*16) + "MB",
}

// walWarmSegments is the WAL warmWAL gives the bench's server before its
// phases, in segments of 16 MB: about what the service's phases and the
// COPY reference write at the default sizes.
const walWarmSegments = 160

// warmWAL makes the server's WAL what a server that has run a while has. A
// new cluster creates each 16 MB segment file the first time it needs it
// (zero-filled and flushed, in the way of the commit that crosses into
// it); a server past its first checkpoints renames the segments of past
// ones for reuse instead. Measured on this machine, a batch phase of
// 2,000,000 operations ran about a tenth slower on segments it had to
// create. So segments are written here (a WAL record and a switch to the
// next segment each) and a checkpoint then keeps them for reuse.
func (s *pgServer) warmWAL(ctx context.Context, segments int) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	for range segments {
		if _, err := c.Exec(ctx, "SELECT pg_logical_emit_message(false, 'omnimemory-bench', ''); SELECT pg_switch_wal()"); err != nil {
			return fmt.Errorf("warm the WAL: %w", err)
		}
	}
	if _, err := c.Exec(ctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("warm the WAL: %w", err)
	}
	return nil
}

// pgServer is a PostgreSQL 15 this tool started on a throwaway cluster
// (realtools: initdb in a temporary folder, as user postgres when this runs
// as root): loopback TCP only, user postgres without password, the
// settings of postgresSettings.
type pgServer struct {
	cluster *realtools.Postgres
}

// startPostgres starts the bench's server.
func startPostgres(ctx context.Context) (*pgServer, error) {
	cluster, err := realtools.StartPostgresWith(ctx, realtools.PostgresOptions{Settings: postgresSettings})
	if errors.Is(err, realtools.ErrMissing) {
		return nil, fmt.Errorf("%w (run scripts/provision.sh, or bench without --stores postgresql)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return &pgServer{cluster: cluster}, nil
}

// pid answers the server's process id (its backends are its children).
func (s *pgServer) pid() int { return s.cluster.Pid() }

// URL answers the URL of database name, as the service's DATABASE_URL.
func (s *pgServer) URL(name string) string {
	return s.cluster.URL(name) + "?sslmode=disable"
}

// query runs f on a connection of its own to url.
func (s *pgServer) query(ctx context.Context, url string, f func(*pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	return f(c)
}

// exec runs statements on database db, one after the other.
func (s *pgServer) exec(ctx context.Context, db string, statements ...string) error {
	return s.query(ctx, s.URL(db), func(c *pgx.Conn) error {
		for _, q := range statements {
			if _, err := c.Exec(ctx, q); err != nil {
				return fmt.Errorf("%.60s: %w", q, err)
			}
		}
		return nil
	})
}

// stop shuts the server down fast (running statements are cancelled, a
// checkpoint is written) and removes the cluster.
func (s *pgServer) stop() { _ = s.cluster.Close() }

// copyTable is the same-run ceiling of the batch phase on PostgreSQL: a
// plain table of the operations' columns, without partitions, indexes,
// rollups or sessions.
const copyTable = `CREATE TABLE tool_operations (
	id uuid NOT NULL, session_id uuid NOT NULL, tool_name text NOT NULL, operation_mode text NOT NULL,
	parameters text NOT NULL, file_path text, tokens_original bigint NOT NULL, tokens_actual bigint NOT NULL,
	tokens_prevented bigint NOT NULL, response_time_ms double precision NOT NULL, tool_id text NOT NULL,
	created_at timestamptz NOT NULL)`

var copyColumns = []string{"id", "session_id", "tool_name", "operation_mode", "parameters", "file_path",
	"tokens_original", "tokens_actual", "tokens_prevented", "response_time_ms", "tool_id", "created_at"}

// copyRow is o as a row of copyTable.
func (o *op) copyRow(id string) ([]any, error) {
	oid, err := uuid.Parse(id)
	if err != nil {
		return nil, err
	}
	sid, err := uuid.Parse(o.SessionID)
	if err != nil {
		return nil, err
	}
	var file any
	if o.FilePath != "" {
		file = o.FilePath
	}
	return []any{oid, sid, o.ToolName, o.Mode, o.Params, file, o.TokensOriginal, o.TokensActual,
		max(0, o.TokensOriginal-o.TokensActual), o.ResponseTimeMs, o.ToolID, time.UnixMicro(o.CreatedAt).UTC()}, nil
}

// copySender writes batch seq (sizeOf(seq) operations, the same as the
// service's batch seq) into copyTable with COPY, one transaction per batch,
// on worker's own connection of conns.
func copySender(conns []*pgx.Conn, g *generator, seed uint64, sizeOf func(seq int64) int) sendFunc {
	return func(ctx context.Context, worker int, seq int64) (int, error) {
		n := sizeOf(seq)
		rows := make([][]any, 0, n)
		var err error
		g.eachBatchOp(seed, seq, n, func(_ int, o *op, id string) {
			if err == nil {
				var r []any
				r, err = o.copyRow(id)
				rows = append(rows, r)
			}
		})
		if err != nil {
			return 0, err
		}
		done, err := conns[worker].CopyFrom(ctx, pgx.Identifier{"tool_operations"}, copyColumns, pgx.CopyFromRows(rows))
		if err == nil && done != int64(n) {
			err = fmt.Errorf("COPY stored %d of %d rows", done, n)
		}
		return n, err
	}
}
