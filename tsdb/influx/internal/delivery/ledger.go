package delivery

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// ledger remembers the ids of keyed operations (those whose id came from the
// client) and of spend points (every one is keyed: its id is derived from
// its series and interval) that this store has taken, so that a client's
// retry is not stored twice: InfluxDB cannot tell by itself, since a retry
// without created_at gets another timestamp and so another point, and a
// retry of a point the store still remembers gets another offset (Slots).
//
// It is a file of fixed records (16-byte id, 8-byte unix seconds), appended
// and fsynced after the operations are durable in the outbox, and loaded at
// Open. It keeps ids for ledgerTTL and at most ledgerMax of them (the oldest
// are forgotten first), and rewrites itself when it holds twice that. A torn
// last record (a crash mid-append) is ignored.
//
// Its limits, stated in docs/api.md (idempotency): one ledger per replica, so a retry that
// reaches another replica is stored again; and a crash between the outbox
// append and the ledger append forgets that batch's ids.
type ledger struct {
	mu      sync.Mutex
	path    string
	f       *os.File
	seen    map[uuid.UUID]int64
	order   []ledgerEntry // oldest first
	records int           // records in the file
	max     int
	ttl     time.Duration
}

type ledgerEntry struct {
	id uuid.UUID
	at int64
}

const (
	ledgerRecord = 24
	ledgerMax    = 200_000
	ledgerTTL    = 24 * time.Hour
)

// openLedger loads the ledger at path, creating it when missing.
func openLedger(path string, max int, ttl time.Duration, now time.Time) (*ledger, error) {
	l := &ledger{path: path, seen: map[uuid.UUID]int64{}, max: max, ttl: ttl}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("influx: idempotency ledger: %w", err)
	}
	for off := 0; off+ledgerRecord <= len(data); off += ledgerRecord {
		var id uuid.UUID
		copy(id[:], data[off:off+16])
		l.remember(id, int64(binary.LittleEndian.Uint64(data[off+16:off+24])))
	}
	l.expire(now)
	if err := l.rewrite(); err != nil {
		return nil, err
	}
	return l, nil
}

// remember records id at unix second at, in memory only.
func (l *ledger) remember(id uuid.UUID, at int64) {
	if _, ok := l.seen[id]; ok {
		return
	}
	l.seen[id] = at
	l.order = append(l.order, ledgerEntry{id, at})
}

// expire forgets ids older than the TTL and the oldest past the bound.
func (l *ledger) expire(now time.Time) {
	cutoff := now.Add(-l.ttl).Unix()
	drop := 0
	for drop < len(l.order) && (l.order[drop].at < cutoff || len(l.order)-drop > l.max) {
		delete(l.seen, l.order[drop].id)
		drop++
	}
	if drop > 0 {
		l.order = append(l.order[:0:0], l.order[drop:]...)
	}
}

// rewrite replaces the file with the ids held in memory (temp file, fsync,
// rename, folder fsync) and reopens it for appending.
func (l *ledger) rewrite() error {
	buf := make([]byte, 0, len(l.order)*ledgerRecord)
	for _, e := range l.order {
		buf = append(buf, e.id[:]...)
		buf = binary.LittleEndian.AppendUint64(buf, uint64(e.at))
	}
	tmp := l.path + ".tmp"
	if err := writeFileSync(tmp, buf); err != nil {
		return fmt.Errorf("influx: idempotency ledger: %w", err)
	}
	if err := os.Rename(tmp, l.path); err != nil {
		return fmt.Errorf("influx: idempotency ledger: %w", err)
	}
	if d, err := os.Open(filepath.Dir(l.path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	if l.f != nil {
		l.f.Close()
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("influx: idempotency ledger: %w", err)
	}
	l.f, l.records = f, len(l.order)
	return nil
}

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// markDuplicates sets Duplicate on every keyed operation of ops whose id the
// ledger holds or that an earlier operation of ops already carries.
func (l *ledger) markDuplicates(ops []tsdb.Operation) {
	dups := l.duplicates(len(ops), func(i int) (uuid.UUID, bool) { return ops[i].ID, ops[i].Keyed })
	for i, d := range dups {
		if d {
			ops[i].Duplicate = true
		}
	}
}

// duplicates answers, for each of n records whose id and keyedness id
// tells, whether it is a keyed record whose id the ledger holds or that an
// earlier keyed record of the n already carries.
func (l *ledger) duplicates(n int, id func(i int) (uuid.UUID, bool)) []bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	dups := make([]bool, n)
	batch := map[uuid.UUID]bool{}
	for i := range n {
		v, keyed := id(i)
		if !keyed {
			continue
		}
		_, seen := l.seen[v]
		if seen || batch[v] {
			dups[i] = true
			continue
		}
		batch[v] = true
	}
	return dups
}

// add records the ids of ops' keyed, non-duplicate operations durably.
func (l *ledger) add(ops []tsdb.Operation, now time.Time) error {
	ids := make([]uuid.UUID, 0, len(ops))
	for i := range ops {
		if ops[i].Keyed && !ops[i].Duplicate {
			ids = append(ids, ops[i].ID)
		}
	}
	return l.addIDs(ids, now)
}

// addIDs records ids durably.
func (l *ledger) addIDs(ids []uuid.UUID, now time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	buf := make([]byte, 0, len(ids)*ledgerRecord)
	at := now.Unix()
	for _, id := range ids {
		buf = append(buf, id[:]...)
		buf = binary.LittleEndian.AppendUint64(buf, uint64(at))
		l.remember(id, at)
	}
	if _, err := l.f.Write(buf); err != nil {
		return fmt.Errorf("influx: idempotency ledger: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("influx: idempotency ledger: %w", err)
	}
	l.records += len(buf) / ledgerRecord
	l.expire(now)
	if l.records > 2*max(l.max, len(l.order)) {
		return l.rewrite()
	}
	return nil
}

// Close closes the ledger's file.
func (l *ledger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
