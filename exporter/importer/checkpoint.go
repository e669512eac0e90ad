package importer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// checkpointVersion is the version of the checkpoint file's format. Version
// 1 (SQLite sources only) kept rowids where version 2 keeps positions; it
// still loads.
const checkpointVersion = 2

// checkpoint is what an import has done so far, kept in a small JSON file
// so that the same command run again continues where it stopped. It is
// replaced atomically (temporary file, fsync, rename) after every batch.
//
// A batch is committed to the store before the checkpoint records it as
// done, so an interruption between the two leaves rows that are stored but
// not recorded: the next run offers them again and the store recognises
// their ids (the operations are Keyed; sessions are looked up first). To
// count those rows as imported rather than as duplicates, the checkpoint
// also records, before each commit, the position of the last row of the
// batch under way (Pending); within it, an operation the store already
// holds counts as imported unless an earlier row of the source carries the
// same id.
type checkpoint struct {
	Version int `json:"version"`
	// Source names the source as Source.Name does: never with a password.
	Source      string `json:"source"`
	Destination string `json:"destination"`
	// SkippedLog is the log of skipped rows the import writes, and
	// SkippedLogBytes its length once the recorded batches were logged: a
	// resumed import cuts it back there before it goes on.
	SkippedLog      string     `json:"skipped_log,omitempty"`
	SkippedLogBytes int64      `json:"skipped_log_bytes"`
	Sessions        phaseState `json:"sessions"`
	Operations      phaseState `json:"operations"`
	UpdatedAt       string     `json:"updated_at"`
}

// phaseState is the progress of one table: every row up to Done is taken.
type phaseState struct {
	Done     position         `json:"done"`
	Pending  *position        `json:"pending,omitempty"`
	Imported int64            `json:"imported"`
	Merged   int64            `json:"merged,omitempty"`
	Skipped  map[string]int64 `json:"skipped,omitempty"`

	// Version 1 (read only).
	V1DoneRowid    int64 `json:"done_rowid,omitempty"`
	V1PendingRowid int64 `json:"pending_rowid,omitempty"`
}

// loadCheckpoint reads the checkpoint at path; ok is false when there is
// none.
func loadCheckpoint(path string) (cp checkpoint, ok bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return checkpoint{}, false, nil
	}
	if err != nil {
		return checkpoint{}, false, fmt.Errorf("checkpoint: %w", err)
	}
	if err := json.Unmarshal(data, &cp); err != nil {
		return checkpoint{}, false, fmt.Errorf("checkpoint %s is damaged (%v): remove it to import from the start", path, err)
	}
	switch cp.Version {
	case checkpointVersion:
	case 1: // SQLite sources only: rowids
		for _, ps := range []*phaseState{&cp.Sessions, &cp.Operations} {
			ps.Done = position{Rowid: ps.V1DoneRowid}
			if ps.V1PendingRowid != 0 {
				ps.Pending = &position{Rowid: ps.V1PendingRowid}
			}
			ps.V1DoneRowid, ps.V1PendingRowid = 0, 0
		}
	default:
		return checkpoint{}, false, fmt.Errorf("checkpoint %s has version %d; this program knows 1 to %d", path, cp.Version, checkpointVersion)
	}
	return cp, true, nil
}

// save replaces the checkpoint at path with cp, durably.
func (cp *checkpoint) save(path string) error {
	cp.Version = checkpointVersion
	cp.UpdatedAt = time.Now().UTC().Format(time.RFC3339Nano)
	data, err := json.MarshalIndent(cp, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
