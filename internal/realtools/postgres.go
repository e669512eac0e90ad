package realtools

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// DebianPostgresBin is where Debian's postgresql-15 package puts the server
// programs (initdb, postgres).
const DebianPostgresBin = "/usr/lib/postgresql/15/bin"

// postgresStartTimeout bounds how long a start waits for the server to
// accept connections.
const postgresStartTimeout = 60 * time.Second

// FindPostgres answers the folder holding PostgreSQL's initdb and postgres:
// $OMNIMEMORY_POSTGRES_BIN when set, else Debian's /usr/lib/postgresql/15/bin.
func FindPostgres() (string, error) {
	dir, from := DebianPostgresBin, "Debian's package postgresql-15"
	if d := os.Getenv("OMNIMEMORY_POSTGRES_BIN"); d != "" {
		dir, from = d, "$OMNIMEMORY_POSTGRES_BIN"
	}
	for _, prog := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(dir, prog)); err != nil {
			return "", fmt.Errorf("%w: no PostgreSQL %s in %s (%s)", ErrMissing, prog, dir, from)
		}
	}
	return dir, nil
}

// Postgres is a throwaway PostgreSQL server (a cluster made by initdb in a
// temporary folder) on a free loopback port, trusting every local
// connection: user postgres, no password. It runs as the current user, or,
// when that is root (which PostgreSQL refuses), as the unprivileged user
// postgres.
type Postgres struct {
	// Port is the TCP port on 127.0.0.1.
	Port int

	dir      string   // the temporary folder: data/, sock/, postgres.log
	bin      string   // the folder of the server programs
	settings []string // PostgresOptions.Settings
	attr     func() *syscall.SysProcAttr

	mu sync.Mutex
	process
}

// StartPostgres makes a new cluster and starts its server, waiting until it
// accepts connections (at most a minute). Without the programs it answers
// an error wrapping ErrMissing. Close stops the server and removes the
// cluster.
func StartPostgres(ctx context.Context) (*Postgres, error) {
	return StartPostgresWith(ctx, PostgresOptions{})
}

// PostgresOptions change how StartPostgresWith runs the server.
type PostgresOptions struct {
	// Settings are server settings, name=value, applied after the tests'
	// own (which turn fsync and full-page writes off: a test cluster need
	// not survive a power loss); "fsync=on" turns it back on.
	Settings []string
}

// StartPostgresWith is StartPostgres with o's settings.
func StartPostgresWith(ctx context.Context, o PostgresOptions) (*Postgres, error) {
	bin, err := FindPostgres()
	if err != nil {
		return nil, err
	}
	s := &Postgres{bin: bin, settings: o.Settings, attr: procAttr}
	parent := "" // the default temporary folder
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("%w: PostgreSQL refuses to run as root and there is no user postgres to run it as: %v", ErrMissing, err)
		}
		if uid, err = strconv.Atoi(u.Uid); err == nil {
			gid, err = strconv.Atoi(u.Gid)
		}
		if err != nil {
			return nil, fmt.Errorf("user postgres: %w", err)
		}
		parent = "/tmp" // $TMPDIR may be a folder user postgres cannot enter
		s.attr = func() *syscall.SysProcAttr { return procAttrAs(uint32(uid), uint32(gid)) }
	}
	if s.dir, err = os.MkdirTemp(parent, "postgres-"); err != nil {
		return nil, err
	}
	fail := func(err error) (*Postgres, error) {
		os.RemoveAll(s.dir)
		return nil, err
	}
	sock := filepath.Join(s.dir, "sock")
	s.logf = filepath.Join(s.dir, "postgres.log")
	if err := os.Mkdir(sock, 0o700); err != nil {
		return fail(err)
	}
	if uid >= 0 {
		for _, p := range []string{s.dir, sock} {
			if err := os.Chown(p, uid, gid); err != nil {
				return fail(err)
			}
		}
	}
	data := filepath.Join(s.dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data,
		"-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C")
	initdb.Dir = s.dir
	initdb.Env = postgresEnv()
	initdb.SysProcAttr = s.attr()
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %v: %s", err, strings.TrimSpace(string(out))))
	}

	// A free port may be taken by someone else before the server binds it:
	// then start again on another.
	var errs []error
	for range 3 {
		if s.Port, err = FreePort(); err == nil {
			if err = s.start(ctx); err == nil {
				return s, nil
			}
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return fail(errors.Join(errs...))
}

// postgresEnv is this process's environment less the PG settings that
// would redirect the server or its tools.
func postgresEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, "LC_ALL=C")
}

// Restart starts the server again after Stop or Kill, on the same port and
// cluster, and waits until it accepts connections. On a running server it
// does nothing.
func (s *Postgres) Restart() error { return s.start(context.Background()) }

// start starts the server unless it runs and waits until it answers.
func (s *Postgres) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", filepath.Join(s.dir, "data"), "-p", strconv.Itoa(s.Port),
		"-k", filepath.Join(s.dir, "sock"),
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "log_min_messages=warning")
	for _, kv := range s.settings {
		cmd.Args = append(cmd.Args, "-c", kv) // the last of a name wins
	}
	cmd.Dir = s.dir
	cmd.Env = postgresEnv()
	cmd.SysProcAttr = s.attr()
	return s.launch(ctx, cmd, "postgres", postgresStartTimeout, s.ping)
}

func (s *Postgres) URL(name string) string {
	return fmt.Sprintf("postgresql://postgres@127.0.0.1:%d/%s", s.Port, name)
}

func (s *Postgres) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.URL("postgres")+"?sslmode=disable")
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	return c.Ping(ctx)
}

// Exec runs one SQL statement (no arguments) on database postgres.
func (s *Postgres) Exec(ctx context.Context, sql string) error {
	c, err := pgx.Connect(ctx, s.URL("postgres")+"?sslmode=disable")
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, sql)
	return err
}

// Stop stops the server (fast shutdown: SIGINT, then SIGKILL after 10 s).
// Stopping a stopped server does nothing.
func (s *Postgres) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.signalTree(syscall.SIGCONT) // a paused server could not stop
	}
	return s.stopLocked(syscall.SIGINT, 10*time.Second)
}

// Kill stops the server abruptly (SIGKILL), as a crash would.
func (s *Postgres) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked(syscall.SIGKILL, 0)
}

// Pause freezes the server and every backend it forked (SIGSTOP):
// connections stay open and go unanswered, as with a server
// that hangs or a network that drops packets. Resume undoes it.
func (s *Postgres) Pause() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signalTree(syscall.SIGSTOP)
}

// Resume lets a paused server and its backends run on (SIGCONT).
func (s *Postgres) Resume() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signalTree(syscall.SIGCONT)
}

// Pid answers the server's process id (0 while stopped).
func (s *Postgres) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Running reports whether the server process runs.
func (s *Postgres) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Close stops the server and removes its cluster.
func (s *Postgres) Close() error {
	err := s.Stop()
	if rerr := os.RemoveAll(s.dir); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return err
}

// NewPostgres starts a server of t's own and closes it when t ends. Without
// the programs it skips t (fails it under CI=true; see SkipOrFatal).
func NewPostgres(t TB) *Postgres {
	t.Helper()
	s, err := StartPostgres(context.Background())
	if err != nil {
		SkipOrFatal(t, fmt.Errorf("postgres: %w", err))
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("postgres: %v", err)
		}
	})
	return s
}

var sharedPG struct {
	mu  sync.Mutex
	srv *Postgres
	err error
}

// SharedPostgres answers the test package's shared server, started on first
// use; RunMain stops it. Without the programs it skips t (fails it under
// CI=true). Tests that stop the server must take their own from NewPostgres.
func SharedPostgres(t TB) *Postgres {
	t.Helper()
	sharedPG.mu.Lock()
	defer sharedPG.mu.Unlock()
	if sharedPG.srv == nil && sharedPG.err == nil {
		sharedPG.srv, sharedPG.err = StartPostgres(context.Background())
	}
	if sharedPG.err != nil {
		SkipOrFatal(t, fmt.Errorf("postgres: %w", sharedPG.err))
	}
	if !sharedPG.srv.Running() {
		t.Fatalf("postgres: the shared server was stopped; tests that stop it must use NewPostgres")
	}
	return sharedPG.srv
}

// stopSharedPostgres stops the shared server, if one was started.
func stopSharedPostgres() {
	sharedPG.mu.Lock()
	defer sharedPG.mu.Unlock()
	if sharedPG.srv != nil {
		if err := sharedPG.srv.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "postgres: %v\n", err)
		}
		sharedPG.srv = nil
	}
}

var pgSeq atomic.Int64

// NewDatabase creates a database with a name unique to this process and
// answers its URL, postgresql://postgres@127.0.0.1:PORT/NAME; it is dropped
// when t ends (when the server still runs).
func (s *Postgres) NewDatabase(t TB) string {
	t.Helper()
	var r [4]byte
	_, _ = rand.Read(r[:])
	name := fmt.Sprintf("test_%d_%s", pgSeq.Add(1), hex.EncodeToString(r[:]))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Exec(ctx, `CREATE DATABASE "`+name+`"`); err != nil {
		t.Fatalf("postgres: create database: %v", err)
	}
	t.Cleanup(func() {
		if !s.Running() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = s.Exec(ctx, `DROP DATABASE IF EXISTS "`+name+`" WITH (FORCE)`)
	})
	return s.URL(name)
}
