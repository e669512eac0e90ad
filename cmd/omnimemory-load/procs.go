package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
)

// child is a process this tool started, in a process group of its own so
// that stopping it stops everything it started too. On Linux it also dies
// with this tool (Pdeathsig), should this tool be killed outright.
type child struct {
	name string
	cmd  *exec.Cmd
	logf string
	done chan struct{}
	err  error // set before done closes
}

// children is every child still running, for cleanup on any exit path.
var children struct {
	mu   sync.Mutex
	list []*child
}

// startChild starts bin with args and env; its output goes to logPath.
func startChild(name, bin string, args, env []string, dir, logPath string) (*child, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, logf: logPath, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		logFile.Close()
		close(c.done)
	}()
	children.mu.Lock()
	children.list = append(children.list, c)
	children.mu.Unlock()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the child's process group, waits up to grace, then
// sends SIGKILL. Stopping a stopped child does nothing.
func (c *child) stop(grace time.Duration) {
	children.mu.Lock()
	for i, x := range children.list {
		if x == c {
			children.list = append(children.list[:i], children.list[i+1:]...)
			break
		}
	}
	children.mu.Unlock()
	if c.exited() {
		return
	}
	_ = syscall.Kill(-c.pid(), syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		_ = syscall.Kill(-c.pid(), syscall.SIGKILL)
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
		}
	}
	_ = syscall.Kill(-c.pid(), syscall.SIGKILL) // anything the child left behind in its group
}

// stopAll stops every child still running (the cleanup of every exit path).
func stopAll() {
	children.mu.Lock()
	list := append([]*child(nil), children.list...)
	children.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range list {
		wg.Add(1)
		go func() { defer wg.Done(); c.stop(10 * time.Second) }()
	}
	wg.Wait()
}

// logTail answers the end of the child's log, for error messages.
func (c *child) logTail() string {
	b, _ := os.ReadFile(c.logf)
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return strings.TrimSpace(string(b))
}

// waitHTTP polls url until it answers want, the child exits, or timeout.
func (c *child) waitHTTP(ctx context.Context, url string, want int, timeout time.Duration) error {
	cl := newClient(1, 2*time.Second)
	defer cl.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	for {
		_, err := do(ctx, cl, http.MethodGet, url, "", nil, want)
		if err == nil {
			return nil
		}
		if c.exited() {
			return fmt.Errorf("%s exited during start: %s", c.name, c.logTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer %s within %s (%v): %s", c.name, url, timeout, err, c.logTail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// freePort answers a free TCP port on 127.0.0.1.
func freePort() (int, error) { return realtools.FreePort() }

// moduleRoot answers the folder of this module's go.mod, above the working
// directory: the bench builds the service from it.
func moduleRoot() (string, error) {
	root, err := realtools.ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("run omnimemory-load bench inside the omnimemory-metrics module: %w", err)
	}
	return root, nil
}

// buildService builds the service binary into dir.
func buildService(ctx context.Context, root, dir string) (string, error) {
	out := filepath.Join(dir, "omnimemory-metrics")
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	build := func(flags ...string) error {
		args := append(append([]string{"build"}, flags...), "-o", out, "./cmd/omnimemory-metrics")
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = root
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/omnimemory-metrics: %w: %s", err, b)
		}
		return nil
	}
	// Stamp the VCS revision when git can tell it (the table names the
	// commit measured); build without it otherwise.
	if err := build("-buildvcs=auto"); err != nil {
		if ctx.Err() != nil {
			return "", err
		}
		if err := build("-buildvcs=false"); err != nil {
			return "", err
		}
	}
	return out, nil
}

// cleanEnv answers the environment without any setting of the service (nor
// libpq's PG variables, which pgx and PostgreSQL's programs read), so that
// only what the bench sets applies.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "OMNIMEMORY_") || strings.HasPrefix(k, "INFLUXDB_") || strings.HasPrefix(k, "SQLITE_") || strings.HasPrefix(k, "OTEL_") ||
			k == "DATABASE_URL" || strings.HasPrefix(k, "PG") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// startService starts the service binary on a free loopback port with the
// given settings and waits until /ready answers 200.
func startService(ctx context.Context, bin, dir, name string, settings ...string) (*child, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	env := cleanEnv(append([]string{"OMNIMEMORY_LISTEN=" + addr, "OMNIMEMORY_LOG_LEVEL=warn"}, settings...)...)
	c, err := startChild(name, bin, nil, env, dir, filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, "", err
	}
	base := "http://" + addr
	if err := c.waitHTTP(ctx, base+"/ready", http.StatusOK, 60*time.Second); err != nil {
		c.stop(5 * time.Second)
		return nil, "", err
	}
	return c, base, nil
}

// startBare starts this program as the bare net/http server.
func startBare(ctx context.Context, dir string) (*child, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c, err := startChild("bare-server", self, []string{"--listen", addr}, cleanEnv(envRole+"=bare-server"), dir, filepath.Join(dir, "bare-server.log"))
	if err != nil {
		return nil, "", err
	}
	base := "http://" + addr
	if err := c.waitHTTP(ctx, base+"/health", http.StatusOK, 30*time.Second); err != nil {
		c.stop(5 * time.Second)
		return nil, "", err
	}
	return c, base, nil
}
