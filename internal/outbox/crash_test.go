package outbox

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

const crashEnv = "OUTBOX_CRASH_CHILD_DIR"

// TestMain runs the test binary as the child process of TestCrashKill9 when
// crashEnv is set, and as the tests otherwise.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir, os.Getenv("OUTBOX_CRASH_ROUND"))
		return
	}
	os.Exit(m.Run())
}

// crashChild is the child process of TestCrashKill9: it appends and drains
// in a loop until killed, printing what Append and Ack acknowledged.
//
//	A <id>            Append returned nil for the record <id>
//	P <id> <id> ...   the drainer is about to Ack these records
//	K <id> <id> ...   Ack returned nil for them
func crashChild(dir, round string) {
	o, err := Open(Options{Dir: dir, SegmentBytes: 64 << 10})
	if err != nil {
		fmt.Println("open failed:", err)
		os.Exit(2)
	}
	out := os.Stdout // unbuffered: every line is one write, atomic on a pipe

	go func() { // the drainer, slower than the appender to keep a backlog
		for {
			es, err := o.Peek(8)
			if err != nil {
				fmt.Fprintln(out, "peek failed:", err)
				os.Exit(2)
			}
			if len(es) == 0 {
				<-o.Wait()
				continue
			}
			ids := make([]string, len(es))
			for i, e := range es {
				ids[i] = recordID(e.Data)
			}
			line := strings.Join(ids, " ")
			fmt.Fprintf(out, "P %s\n", line)
			if err := o.Ack(es[len(es)-1].Seq); err != nil {
				fmt.Fprintln(out, "ack failed:", err)
				os.Exit(2)
			}
			fmt.Fprintf(out, "K %s\n", line)
			time.Sleep(2 * time.Millisecond)
		}
	}()

	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	for i := 0; ; {
		group := make([][]byte, 1+r.IntN(8))
		for k := range group {
			id := fmt.Sprintf("r%s-%d", round, i+k)
			group[k] = []byte(id + " " + strings.Repeat("p", r.IntN(4000)))
		}
		if err := o.Append(group...); err != nil {
			fmt.Fprintln(out, "append failed:", err)
			os.Exit(2)
		}
		for k := range group {
			fmt.Fprintf(out, "A r%s-%d\n", round, i+k)
		}
		i += len(group)
	}
}

func recordID(data []byte) string {
	id, _, _ := strings.Cut(string(data), " ")
	return id
}

// TestCrashKill9 runs a child that appends and drains, kills it with
// SIGKILL, and checks on reopening that every record Append acknowledged
// is either still there or was handed to the drainer, and that nothing Ack
// acknowledged comes back. Three rounds share one folder, so each round
// also recovers from the previous crash. (This tests process crashes; the
// page cache survives them, so power loss is covered only by the fsync
// discipline, not by this test.)
func TestCrashKill9(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("needs SIGKILL")
	}
	if testing.Short() {
		t.Skip("starts child processes")
	}
	dir := t.TempDir()
	var appended int
	acked := make(map[string]bool)   // Append returned nil
	peeked := make(map[string]bool)  // handed to the drainer
	removed := make(map[string]bool) // Ack returned nil
	for round := range 3 {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), crashEnv+"="+dir, "OUTBOX_CRASH_ROUND="+strconv.Itoa(round))
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan []string)
		go func() {
			var ls []string
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				ls = append(ls, sc.Text())
			}
			lines <- ls
		}()
		time.Sleep(time.Duration(150+50*round) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		out := <-lines
		if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("round %d: child ended with %v, want killed; output:\n%s", round, err, strings.Join(out, "\n"))
		}

		before := len(acked)
		for _, l := range out {
			kind, rest, _ := strings.Cut(l, " ")
			switch kind {
			case "A":
				acked[rest] = true
			case "P":
				for _, id := range strings.Fields(rest) {
					peeked[id] = true
				}
			case "K":
				for _, id := range strings.Fields(rest) {
					removed[id] = true
				}
			default:
				if strings.Contains(l, "failed") {
					t.Fatalf("round %d: child: %s", round, l)
				}
			}
		}
		appended += len(acked) - before
		t.Logf("round %d: %d records acknowledged by Append so far, %d by Ack", round, len(acked), len(removed))

		var logs logBuf
		o, err := Open(Options{Dir: dir, SegmentBytes: 64 << 10, Logger: logs.logger()})
		if err != nil {
			t.Fatalf("round %d: Open after kill: %v", round, err)
		}
		if s := logs.String(); s != "" {
			t.Logf("round %d: recovery log:\n%s", round, s)
		}
		es := peekAll(t, o)
		present := make(map[string]bool)
		for i, e := range es {
			id := recordID(e.Data)
			if present[id] {
				t.Errorf("round %d: record %s twice", round, id)
			}
			present[id] = true
			if removed[id] {
				t.Errorf("round %d: record %s redelivered after its Ack returned", round, id)
			}
			if i > 0 && e.Seq != es[i-1].Seq+1 {
				t.Errorf("round %d: seq %d follows %d", round, e.Seq, es[i-1].Seq)
			}
		}
		for id := range acked {
			if !present[id] && !peeked[id] {
				t.Errorf("round %d: record %s acknowledged by Append is lost", round, id)
			}
		}
		if err := o.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Fatal(err)
		}
	}
	if appended == 0 {
		t.Fatal("the children appended nothing before being killed")
	}
}
