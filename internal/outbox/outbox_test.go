package outbox

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBuf collects log output for assertions.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// mustOpen opens an outbox and closes it when the test ends.
func mustOpen(t testing.TB, opts Options) *Outbox {
	t.Helper()
	o, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := o.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return o
}

func mustClose(t testing.TB, o *Outbox) {
	t.Helper()
	if err := o.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// rec returns a record of the given size that starts with its number.
func rec(i, size int) []byte {
	b := fmt.Appendf(nil, "rec-%d-", i)
	for len(b) < size {
		b = append(b, byte('a'+len(b)%26))
	}
	return b
}

func peekAll(t testing.TB, o *Outbox) []Entry {
	t.Helper()
	es, err := o.Peek(1 << 30)
	if err != nil {
		t.Fatalf("Peek: %v", err)
	}
	return es
}

func seqs(es []Entry) []uint64 {
	var s []uint64
	for _, e := range es {
		s = append(s, e.Seq)
	}
	return s
}

func seqRange(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segExt))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustAppend(t testing.TB, o *Outbox, records ...[]byte) {
	t.Helper()
	if err := o.Append(records...); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

func mustAck(t testing.TB, o *Outbox, seq uint64) {
	t.Helper()
	if err := o.Ack(seq); err != nil {
		t.Fatalf("Ack(%d): %v", seq, err)
	}
}

func TestRoundTrip(t *testing.T) {
	o := mustOpen(t, Options{Dir: filepath.Join(t.TempDir(), "a", "outbox")})
	if es := peekAll(t, o); len(es) != 0 {
		t.Fatalf("new outbox: Peek = %v, want none", es)
	}
	mustAppend(t, o, []byte("one"), []byte("two"), []byte("three"))
	mustAppend(t, o, []byte("four"))
	mustAppend(t, o, []byte{}) // empty records are records too
	mustAppend(t, o)           // no records: nothing happens

	want := []Entry{{1, []byte("one")}, {2, []byte("two")}, {3, []byte("three")}, {4, []byte("four")}, {5, []byte{}}}
	for range 2 { // Peek does not remove.
		es := peekAll(t, o)
		if len(es) != len(want) {
			t.Fatalf("Peek = %d entries, want %d", len(es), len(want))
		}
		for i := range es {
			if es[i].Seq != want[i].Seq || !bytes.Equal(es[i].Data, want[i].Data) {
				t.Errorf("entry %d = {%d %q}, want {%d %q}", i, es[i].Seq, es[i].Data, want[i].Seq, want[i].Data)
			}
		}
	}
	if es, _ := o.Peek(2); !slices.Equal(seqs(es), []uint64{1, 2}) {
		t.Errorf("Peek(2) = %v, want seqs 1, 2", seqs(es))
	}
	if got, want := o.Len(), 5; got != want {
		t.Errorf("Len = %d, want %d", got, want)
	}
	if got, want := o.Bytes(), int64(5*recHeaderSize+3+3+5+4); got != want {
		t.Errorf("Bytes = %d, want %d", got, want)
	}

	mustAck(t, o, 3)
	if got := seqs(peekAll(t, o)); !slices.Equal(got, []uint64{4, 5}) {
		t.Errorf("after Ack(3): Peek seqs = %v, want [4 5]", got)
	}
	if got, want := o.Bytes(), int64(2*recHeaderSize+4); got != want {
		t.Errorf("after Ack(3): Bytes = %d, want %d", got, want)
	}
	mustAck(t, o, 2) // already delivered: no-op
	if err := o.Ack(6); err == nil {
		t.Error("Ack(6) of a never appended seq: got nil error")
	}
	mustAck(t, o, 5)
	if es := peekAll(t, o); len(es) != 0 || o.Len() != 0 || o.Bytes() != 0 {
		t.Errorf("after Ack(5): Peek = %v, Len = %d, Bytes = %d; want empty", seqs(es), o.Len(), o.Bytes())
	}
	mustAppend(t, o, []byte("six"))
	if got := seqs(peekAll(t, o)); !slices.Equal(got, []uint64{6}) {
		t.Errorf("Peek seqs = %v, want [6]", got)
	}
}

func TestRestartKeepsUndeliveredOnly(t *testing.T) {
	dir := t.TempDir()
	o := mustOpen(t, Options{Dir: dir})
	for i := 1; i <= 10; i++ {
		mustAppend(t, o, rec(i, 50))
	}
	mustAck(t, o, 4)
	mustClose(t, o)

	o = mustOpen(t, Options{Dir: dir})
	es := peekAll(t, o)
	if got := seqs(es); !slices.Equal(got, seqRange(5, 10)) {
		t.Fatalf("after restart: Peek seqs = %v, want 5..10", got)
	}
	for _, e := range es {
		if !bytes.Equal(e.Data, rec(int(e.Seq), 50)) {
			t.Errorf("seq %d: data %q", e.Seq, e.Data)
		}
	}
	if got, want := o.Len(), 6; got != want {
		t.Errorf("Len = %d, want %d", got, want)
	}
	if got, want := o.Bytes(), int64(6*(recHeaderSize+50)); got != want {
		t.Errorf("Bytes = %d, want %d", got, want)
	}
	select {
	case <-o.Wait():
	default:
		t.Error("Wait not signalled at Open with records waiting")
	}
	mustAppend(t, o, rec(11, 50))
	mustAck(t, o, 10)
	mustClose(t, o)

	// Everything delivered: sequence numbers still continue.
	o = mustOpen(t, Options{Dir: dir})
	if got := seqs(peekAll(t, o)); !slices.Equal(got, []uint64{11}) {
		t.Fatalf("Peek seqs = %v, want [11]", got)
	}
	mustAck(t, o, 11)
	mustClose(t, o)
	o = mustOpen(t, Options{Dir: dir})
	if o.Len() != 0 {
		t.Fatalf("Len = %d, want 0", o.Len())
	}
	mustAppend(t, o, rec(12, 50))
	if got := seqs(peekAll(t, o)); !slices.Equal(got, []uint64{12}) {
		t.Fatalf("Peek seqs = %v, want [12]", got)
	}
}

func TestTornTail(t *testing.T) {
	const n, size = 5, 100
	const framed = recHeaderSize + size
	const lastOff = segHeaderSize + (n-1)*framed // offset of the last record
	const fileSize = segHeaderSize + n*framed

	flip := func(off int64) func(*testing.T, string) {
		return func(t *testing.T, path string) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[off] ^= 0xff
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	truncate := func(size int64) func(*testing.T, string) {
		return func(t *testing.T, path string) {
			if err := os.Truncate(path, size); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendBytes := func(extra []byte) func(*testing.T, string) {
		return func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write(extra); err != nil {
				t.Fatal(err)
			}
		}
	}
	both := func(a, b func(*testing.T, string)) func(*testing.T, string) {
		return func(t *testing.T, path string) { a(t, path); b(t, path) }
	}

	tests := []struct {
		name      string
		damage    func(*testing.T, string)
		kept      int   // intact records left
		discarded int64 // bytes reported and cut
	}{
		{"payload cut mid-way", truncate(fileSize - 50), n - 1, framed - 50},
		{"header cut mid-way", truncate(lastOff + 5), n - 1, 5},
		{"checksum byte flipped", flip(lastOff + 5), n - 1, framed},
		{"payload byte flipped", flip(lastOff + recHeaderSize + 42), n - 1, framed},
		{"length byte flipped", flip(lastOff), n - 1, framed},
		{"cut and flipped", both(truncate(fileSize-30), flip(lastOff+recHeaderSize+3)), n - 1, framed - 30},
		{"zeros after the end", appendBytes(make([]byte, 4096)), n, 4096},
		{"second-to-last flipped", flip(lastOff - framed + recHeaderSize), n - 2, 2 * framed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			o := mustOpen(t, Options{Dir: dir})
			for i := 1; i <= n; i++ {
				mustAppend(t, o, rec(i, size))
			}
			mustClose(t, o)
			seg := filepath.Join(dir, segName(1))
			tt.damage(t, seg)

			var logs logBuf
			o = mustOpen(t, Options{Dir: dir, Logger: logs.logger()})
			if !strings.Contains(logs.String(), fmt.Sprintf("discarded_bytes=%d", tt.discarded)) {
				t.Errorf("log does not report %d discarded bytes:\n%s", tt.discarded, logs.String())
			}
			st, err := os.Stat(seg)
			if err != nil {
				t.Fatal(err)
			}
			if want := int64(segHeaderSize + tt.kept*framed); st.Size() != want {
				t.Errorf("segment size = %d, want %d (truncated to the intact part)", st.Size(), want)
			}
			if got := seqs(peekAll(t, o)); !slices.Equal(got, seqRange(1, uint64(tt.kept))) {
				t.Errorf("Peek seqs = %v, want 1..%d", got, tt.kept)
			}
			mustAppend(t, o, []byte("after"))
			mustClose(t, o)

			logs = logBuf{}
			o = mustOpen(t, Options{Dir: dir, Logger: logs.logger()})
			if strings.Contains(logs.String(), "discard") {
				t.Errorf("second Open reports damage again:\n%s", logs.String())
			}
			es := peekAll(t, o)
			if got := seqs(es); !slices.Equal(got, seqRange(1, uint64(tt.kept+1))) {
				t.Fatalf("Peek seqs = %v, want 1..%d", got, tt.kept+1)
			}
			for _, e := range es[:tt.kept] {
				if !bytes.Equal(e.Data, rec(int(e.Seq), size)) {
					t.Errorf("seq %d: data %q", e.Seq, e.Data)
				}
			}
			if last := es[len(es)-1]; string(last.Data) != "after" {
				t.Errorf("last record = %q, want %q", last.Data, "after")
			}
		})
	}
}

func TestIncompleteSegmentHeader(t *testing.T) {
	// A crash right after creating a segment file leaves a short header.
	dir := t.TempDir()
	o := mustOpen(t, Options{Dir: dir, SegmentBytes: 300})
	for i := 1; i <= 3; i++ {
		mustAppend(t, o, rec(i, 100)) // two per segment
	}
	mustClose(t, o)
	if err := os.WriteFile(filepath.Join(dir, segName(4)), []byte("OMOB"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs logBuf
	o = mustOpen(t, Options{Dir: dir, SegmentBytes: 300, Logger: logs.logger()})
	if !strings.Contains(logs.String(), "discarded_bytes=4") {
		t.Errorf("log does not report the short header:\n%s", logs.String())
	}
	mustAppend(t, o, rec(4, 100))
	if got := seqs(peekAll(t, o)); !slices.Equal(got, seqRange(1, 4)) {
		t.Fatalf("Peek seqs = %v, want 1..4", got)
	}
}

func TestCorruptMiddleOfEarlierSegment(t *testing.T) {
	const size = 100
	const framed = recHeaderSize + size
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: segHeaderSize + 4*framed} // four records per segment
	o := mustOpen(t, opts)
	for i := 1; i <= 12; i++ {
		mustAppend(t, o, rec(i, size))
	}
	mustClose(t, o)
	if got := len(segFiles(t, dir)); got != 3 {
		t.Fatalf("%d segment files, want 3", got)
	}

	// Damage the payload of record 2, in the first segment.
	path := filepath.Join(dir, segName(1))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[segHeaderSize+framed+recHeaderSize+7] ^= 0x01
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}

	var logs logBuf
	opts.Logger = logs.logger()
	o = mustOpen(t, opts)
	if !strings.Contains(logs.String(), "middle of a segment") || !strings.Contains(logs.String(), fmt.Sprintf("skipped_bytes=%d", 3*framed)) {
		t.Errorf("log does not report the corruption with %d skipped bytes:\n%s", 3*framed, logs.String())
	}
	want := append([]uint64{1}, seqRange(5, 12)...)
	if got := seqs(peekAll(t, o)); !slices.Equal(got, want) {
		t.Fatalf("Peek seqs = %v, want %v", got, want)
	}
	if got := o.Len(); got != 9 {
		t.Errorf("Len = %d, want 9", got)
	}
	mustAck(t, o, 1)
	if got := seqs(peekAll(t, o)); !slices.Equal(got, seqRange(5, 12)) {
		t.Fatalf("after Ack(1): Peek seqs = %v, want 5..12", got)
	}
	if got := len(segFiles(t, dir)); got != 2 {
		t.Errorf("after Ack(1): %d segment files, want 2 (damaged one deleted)", got)
	}
	mustAck(t, o, 12)
	if o.Len() != 0 || o.Bytes() != 0 {
		t.Errorf("Len = %d, Bytes = %d; want 0", o.Len(), o.Bytes())
	}
}

func TestDamagedAckFileRedelivers(t *testing.T) {
	dir := t.TempDir()
	o := mustOpen(t, Options{Dir: dir})
	mustAppend(t, o, rec(1, 10), rec(2, 10), rec(3, 10))
	mustAck(t, o, 2)
	mustClose(t, o)
	if err := os.WriteFile(filepath.Join(dir, ackName), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs logBuf
	o = mustOpen(t, Options{Dir: dir, Logger: logs.logger()})
	if !strings.Contains(logs.String(), "ack file unreadable") {
		t.Errorf("damaged ack file not reported:\n%s", logs.String())
	}
	if got := seqs(peekAll(t, o)); !slices.Equal(got, seqRange(1, 3)) {
		t.Errorf("Peek seqs = %v, want 1..3 (at least once)", got)
	}
}

func TestFull(t *testing.T) {
	const size = 100
	const framed = recHeaderSize + size
	dir := t.TempDir()
	o := mustOpen(t, Options{Dir: dir, MaxBytes: 4 * framed})
	mustAppend(t, o, rec(1, size), rec(2, size), rec(3, size))
	mustAppend(t, o, rec(4, size)) // exactly at the bound
	if got := o.Bytes(); got != 4*framed {
		t.Fatalf("Bytes = %d, want %d", got, 4*framed)
	}
	if err := o.Append(rec(5, size)); !errors.Is(err, ErrFull) {
		t.Fatalf("Append past the bound: err = %v, want ErrFull", err)
	}
	if err := o.Append([]byte{}); !errors.Is(err, ErrFull) {
		t.Fatalf("Append of an empty record past the bound: err = %v, want ErrFull", err)
	}
	if err := o.Append(make([]byte, 4*framed)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Append of a record larger than the bound: err = %v, want ErrTooLarge", err)
	}

	mustAck(t, o, 1)
	// Two records need two slots; only one is free: nothing is written.
	if err := o.Append(rec(5, size), rec(6, size)); !errors.Is(err, ErrFull) {
		t.Fatalf("Append of two with one free: err = %v, want ErrFull", err)
	}
	if got := o.Len(); got != 3 {
		t.Fatalf("Len = %d after a refused Append, want 3", got)
	}
	mustAppend(t, o, rec(5, size))
	mustClose(t, o)

	// The bound holds across a restart.
	o = mustOpen(t, Options{Dir: dir, MaxBytes: 4 * framed})
	if err := o.Append(rec(6, size)); !errors.Is(err, ErrFull) {
		t.Fatalf("after restart: err = %v, want ErrFull", err)
	}
	mustAck(t, o, 3)
	mustAppend(t, o, rec(6, size), rec(7, size))
	if got := seqs(peekAll(t, o)); !slices.Equal(got, seqRange(4, 7)) {
		t.Fatalf("Peek seqs = %v, want 4..7", got)
	}
}

func TestRotationAndDeletion(t *testing.T) {
	const size = 100
	const framed = recHeaderSize + size
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: segHeaderSize + 9*framed} // nine records per segment
	o := mustOpen(t, opts)
	for i := 1; i <= 50; i++ {
		mustAppend(t, o, rec(i, size))
	}
	files := segFiles(t, dir)
	var want []string
	for _, base := range []uint64{1, 10, 19, 28, 37, 46} {
		want = append(want, filepath.Join(dir, segName(base)))
	}
	if !slices.Equal(files, want) {
		t.Fatalf("segment files = %v, want %v", files, want)
	}
	for _, f := range files[:5] {
		if st, err := os.Stat(f); err != nil || st.Size() != segHeaderSize+9*framed {
			t.Errorf("%s: size %v, err %v; want %d", f, st.Size(), err, segHeaderSize+9*framed)
		}
	}

	mustAck(t, o, 20) // segments 1 and 10 fully delivered, 19 partly
	if got := segFiles(t, dir); !slices.Equal(got, want[2:]) {
		t.Errorf("after Ack(20): segment files = %v, want %v", got, want[2:])
	}
	mustAck(t, o, 27) // segment 19 exactly
	if got := segFiles(t, dir); !slices.Equal(got, want[3:]) {
		t.Errorf("after Ack(27): segment files = %v, want %v", got, want[3:])
	}
	if got := seqs(peekAll(t, o)); !slices.Equal(got, seqRange(28, 50)) {
		t.Fatalf("Peek seqs = %v, want 28..50", got)
	}
	mustAck(t, o, 50)
	if got := segFiles(t, dir); !slices.Equal(got, want[5:]) {
		t.Errorf("after Ack(50): segment files = %v, want only the active %v", got, want[5:])
	}

	// One Append is never split: a group larger than a segment fills one.
	var group [][]byte
	for i := 51; i <= 70; i++ {
		group = append(group, rec(i, size))
	}
	mustAppend(t, o, group...)
	mustClose(t, o)

	o = mustOpen(t, opts)
	es := peekAll(t, o)
	if got := seqs(es); !slices.Equal(got, seqRange(51, 70)) {
		t.Fatalf("after restart: Peek seqs = %v, want 51..70", got)
	}
	for _, e := range es {
		if !bytes.Equal(e.Data, rec(int(e.Seq), size)) {
			t.Errorf("seq %d: data %q", e.Seq, e.Data)
		}
	}
	// Open deleted segment 46, whose records were all delivered.
	if got, want := segFiles(t, dir), []string{filepath.Join(dir, segName(51))}; !slices.Equal(got, want) {
		t.Errorf("segment files = %v, want %v", got, want)
	}
	mustAck(t, o, 70)
	if got := len(segFiles(t, dir)); got != 1 {
		t.Errorf("after Ack(70): %d segment files, want 1", got)
	}
}

func TestConcurrentAppendersAndDrainer(t *testing.T) {
	const appenders, appends = 8, 300
	dir := t.TempDir()
	// A small bound and segments, so appenders meet ErrFull and segments
	// rotate and go while the drainer runs.
	o := mustOpen(t, Options{Dir: dir, MaxBytes: 32 << 10, SegmentBytes: 8 << 10})

	var wg sync.WaitGroup
	var sent sync.Map // payload -> true
	var nsent int64
	var mu sync.Mutex
	for g := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			i := 0
			for i < appends {
				var group [][]byte
				for k := 0; k < 1+r.IntN(4) && i+k < appends; k++ {
					group = append(group, fmt.Appendf(nil, "g%d-%05d-%s", g, i+k, strings.Repeat("x", r.IntN(300))))
				}
				err := o.Append(group...)
				if errors.Is(err, ErrFull) {
					time.Sleep(100 * time.Microsecond)
					continue
				}
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				for _, p := range group {
					sent.Store(string(p), true)
				}
				mu.Lock()
				nsent += int64(len(group))
				mu.Unlock()
				i += len(group)
			}
		}()
	}

	received := make(map[string]bool)
	last := make(map[int]int) // appender -> last index received
	var lastSeq uint64
	deadline := time.After(60 * time.Second)
	for len(received) < appenders*appends {
		es, err := o.Peek(37)
		if err != nil {
			t.Fatalf("Peek: %v", err)
		}
		if len(es) == 0 {
			select {
			case <-o.Wait():
			case <-time.After(50 * time.Millisecond):
			case <-deadline:
				t.Fatalf("timed out with %d of %d records received", len(received), appenders*appends)
			}
			continue
		}
		for _, e := range es {
			if e.Seq <= lastSeq {
				t.Fatalf("seq %d after %d", e.Seq, lastSeq)
			}
			lastSeq = e.Seq
			p := string(e.Data)
			if received[p] {
				t.Fatalf("duplicate record %q", p[:12])
			}
			received[p] = true
			var g, i int
			if _, err := fmt.Sscanf(p, "g%d-%05d-", &g, &i); err != nil {
				t.Fatalf("bad record %q: %v", p, err)
			}
			if prev, ok := last[g]; ok && i <= prev {
				t.Fatalf("appender %d: record %d after %d", g, i, prev)
			}
			last[g] = i
		}
		mustAck(t, o, es[len(es)-1].Seq)
	}
	wg.Wait()
	sent.Range(func(k, _ any) bool {
		if !received[k.(string)] {
			t.Errorf("acknowledged record %q never received", k.(string)[:12])
		}
		return true
	})
	if nsent != appenders*appends {
		t.Errorf("%d records acknowledged by Append, want %d", nsent, appenders*appends)
	}
	if o.Len() != 0 || o.Bytes() != 0 {
		t.Errorf("Len = %d, Bytes = %d; want 0", o.Len(), o.Bytes())
	}
	if got := len(segFiles(t, dir)); got > 2 {
		t.Errorf("%d segment files left after delivering everything, want at most 2", got)
	}
}

func TestLockedFolder(t *testing.T) {
	dir := t.TempDir()
	o := mustOpen(t, Options{Dir: dir})
	if _, err := Open(Options{Dir: dir}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: err = %v, want ErrLocked", err)
	}
	mustClose(t, o)
	mustOpen(t, Options{Dir: dir})
}

func TestClosed(t *testing.T) {
	o := mustOpen(t, Options{Dir: t.TempDir()})
	mustAppend(t, o, []byte("x"))
	wait := o.Wait()
	mustClose(t, o)
	for name, err := range map[string]error{
		"Append": o.Append([]byte("y")),
		"Ack":    o.Ack(1),
		"Close":  o.Close(),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: err = %v, want ErrClosed", name, err)
		}
	}
	if _, err := o.Peek(1); !errors.Is(err, ErrClosed) {
		t.Errorf("Peek after Close: err = %v, want ErrClosed", err)
	}
	<-wait // the pending signal, if any
	if _, ok := <-wait; ok {
		t.Error("Wait channel still open after Close")
	}
}

func TestWaitSignalsAppend(t *testing.T) {
	o := mustOpen(t, Options{Dir: t.TempDir()})
	select {
	case <-o.Wait():
		t.Fatal("Wait signalled on an empty new outbox")
	default:
	}
	go func() {
		time.Sleep(10 * time.Millisecond)
		o.Append([]byte("x"))
	}()
	select {
	case <-o.Wait():
	case <-time.After(10 * time.Second):
		t.Fatal("Wait not signalled after Append")
	}
	if got := o.Len(); got != 1 {
		t.Errorf("Len = %d after the signal, want 1", got)
	}
}

func TestDamagedSegmentHeaderKeepsRecords(t *testing.T) {
	dir := t.TempDir()
	o := mustOpen(t, Options{Dir: dir})
	mustAppend(t, o, rec(1, 30), rec(2, 30))
	mustClose(t, o)
	path := filepath.Join(dir, segName(1))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[3] ^= 0xff // in the magic
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var logs logBuf
	o = mustOpen(t, Options{Dir: dir, Logger: logs.logger()})
	if !strings.Contains(logs.String(), "segment header damaged") {
		t.Errorf("damaged header not reported:\n%s", logs.String())
	}
	mustAppend(t, o, rec(3, 30))
	mustClose(t, o)

	logs = logBuf{}
	o = mustOpen(t, Options{Dir: dir, Logger: logs.logger()})
	if logs.String() != "" {
		t.Errorf("header not repaired; second Open logs:\n%s", logs.String())
	}
	if got := seqs(peekAll(t, o)); !slices.Equal(got, seqRange(1, 3)) {
		t.Fatalf("Peek seqs = %v, want 1..3", got)
	}
}

func TestAckPastRecordsOnDisk(t *testing.T) {
	// If delivered records vanished (damage), numbering continues after
	// the ack file's position, so new records are never taken as delivered.
	dir := t.TempDir()
	o := mustOpen(t, Options{Dir: dir})
	mustAppend(t, o, rec(1, 30), rec(2, 30), rec(3, 30))
	mustAck(t, o, 3)
	mustClose(t, o)
	if err := os.Truncate(filepath.Join(dir, segName(1)), segHeaderSize); err != nil {
		t.Fatal(err)
	}
	var logs logBuf
	o = mustOpen(t, Options{Dir: dir, Logger: logs.logger()})
	if !strings.Contains(logs.String(), "ack file is past the last record") {
		t.Errorf("not reported:\n%s", logs.String())
	}
	mustAppend(t, o, rec(4, 30))
	if got := seqs(peekAll(t, o)); !slices.Equal(got, []uint64{4}) {
		t.Fatalf("Peek seqs = %v, want [4]", got)
	}
	if got, want := segFiles(t, dir), []string{filepath.Join(dir, segName(4))}; !slices.Equal(got, want) {
		t.Errorf("segment files = %v, want %v", got, want)
	}
}

// TestPeekAfter: the records after a sequence number, across segments,
// as a drainer with records in flight reads them; the records up to the
// acknowledged one are never returned, whatever seq is asked after.
func TestPeekAfter(t *testing.T) {
	const size = 100
	o := mustOpen(t, Options{Dir: t.TempDir(), SegmentBytes: segHeaderSize + 9*(recHeaderSize+size)})
	for i := 1; i <= 30; i++ {
		mustAppend(t, o, rec(i, size))
	}
	for _, c := range []struct {
		after, max int
		want       []uint64
	}{
		{0, 5, seqRange(1, 5)},
		{4, 5, seqRange(5, 9)},
		{8, 3, seqRange(9, 11)}, // across the first segment's end
		{17, 100, seqRange(18, 30)},
		{29, 5, seqRange(30, 30)},
		{30, 5, nil},
	} {
		es, err := o.PeekAfter(uint64(c.after), c.max)
		if err != nil {
			t.Fatal(err)
		}
		if got := seqs(es); !slices.Equal(got, c.want) {
			t.Errorf("PeekAfter(%d, %d) = %v, want %v", c.after, c.max, got, c.want)
		}
		for _, e := range es {
			if !bytes.Equal(e.Data, rec(int(e.Seq), size)) {
				t.Errorf("PeekAfter(%d, %d): seq %d holds %q", c.after, c.max, e.Seq, e.Data)
			}
		}
	}
	mustAck(t, o, 12)
	for _, after := range []uint64{0, 12} {
		if es, err := o.PeekAfter(after, 3); err != nil || !slices.Equal(seqs(es), seqRange(13, 15)) {
			t.Errorf("after Ack(12): PeekAfter(%d, 3) = %v, %v; want 13..15", after, seqs(es), err)
		}
	}
}
