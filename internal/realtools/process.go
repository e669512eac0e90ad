package realtools

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// process is a server program the tests run (influxd, postgres): started
// with its output appended to a log file, waited for until it answers,
// stopped by a signal. Its owner holds a lock around every call.
type process struct {
	logf string        // the log file, whose tail explains a failed start
	cmd  *exec.Cmd     // nil while stopped
	done chan struct{} // closed when cmd exits
}

// launch starts cmd (its output to the log file) and waits until ready
// answers nil, at most timeout; what names the program in errors. A start
// that fails, times out or whose ctx ends leaves nothing running.
func (p *process) launch(ctx context.Context, cmd *exec.Cmd, what string, timeout time.Duration, ready func(context.Context) error) error {
	logFile, err := os.OpenFile(p.logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", what, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done

	deadline := time.Now().Add(timeout)
	for {
		if err := ready(ctx); err == nil {
			return nil
		}
		select {
		case <-done:
			p.cmd, p.done = nil, nil
			return fmt.Errorf("%s exited during start: %s", what, p.logTail())
		case <-ctx.Done():
			p.stopLocked(syscall.SIGKILL, 0)
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stopLocked(syscall.SIGKILL, 0)
			return fmt.Errorf("%s did not answer within %s: %s", what, timeout, p.logTail())
		}
	}
}

// stopLocked sends sig and waits for the exit, killing the process after
// grace. Stopping a stopped process does nothing.
func (p *process) stopLocked(sig os.Signal, grace time.Duration) error {
	if p.cmd == nil {
		return nil
	}
	cmd, done := p.cmd, p.done
	p.cmd, p.done = nil, nil
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
	return nil
}

// logTail answers the end of the log file.
func (p *process) logTail() string {
	b, _ := os.ReadFile(p.logf)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}
