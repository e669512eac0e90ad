package outbox

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// On-disk layout; see the package comment.
const (
	segMagic      = "OMOBSEG1" // segment header magic, format version 1
	ackMagic      = "OMOBACK1" // ack file magic, format version 1
	segHeaderSize = 20         // magic(8) + base seq(8) + crc32c(4)
	recHeaderSize = 8          // length(4) + crc32c(4)
	ackFileSize   = 20         // magic(8) + acked seq(8) + crc32c(4)
	segExt        = ".seg"
	ackName       = "acked"
	ackTmpName    = "acked.tmp"
	lockName      = "LOCK"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func segName(base uint64) string { return fmt.Sprintf("%020d%s", base, segExt) }

// parseSegName returns the base sequence number encoded in a segment file
// name, and false for any other file.
func parseSegName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segExt)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	base, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || base == 0 {
		return 0, false
	}
	return base, true
}

// encodeHeader builds a segment or ack file header: magic, a sequence
// number and a checksum of both.
func encodeHeader(magic string, seq uint64) []byte {
	b := make([]byte, 20)
	copy(b, magic)
	binary.LittleEndian.PutUint64(b[8:16], seq)
	binary.LittleEndian.PutUint32(b[16:20], crc32.Checksum(b[:16], castagnoli))
	return b
}

// decodeHeader checks a header built by encodeHeader and returns its
// sequence number.
func decodeHeader(magic string, b []byte) (uint64, error) {
	switch {
	case len(b) != 20:
		return 0, fmt.Errorf("header is %d bytes, want 20", len(b))
	case string(b[:8]) != magic:
		return 0, fmt.Errorf("bad magic %q, want %q", b[:8], magic)
	case crc32.Checksum(b[:16], castagnoli) != binary.LittleEndian.Uint32(b[16:20]):
		return 0, errors.New("header checksum mismatch")
	}
	return binary.LittleEndian.Uint64(b[8:16]), nil
}

// recordCRC is the checksum of a record: CRC-32C over its 4 length bytes and
// its payload, so that a damaged length or zero-filled space never passes.
func recordCRC(lenBytes, payload []byte) uint32 {
	return crc32.Update(crc32.Update(0, castagnoli, lenBytes), castagnoli, payload)
}

// appendRecord appends payload framed as one record to dst.
func appendRecord(dst, payload []byte) []byte {
	var h [recHeaderSize]byte
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[4:8], recordCRC(h[0:4], payload))
	dst = append(dst, h[:]...)
	return append(dst, payload...)
}

// scanResult summarises one segment file read from its header to its end.
type scanResult struct {
	n                uint64 // intact records, sequence numbers base..base+n-1
	end              int64  // offset just past the last intact record
	skipped          uint64 // leading intact records already delivered
	skipEnd          int64  // offset just past them: the first undelivered record
	undeliveredBytes int64  // framed size of the intact undelivered records
	problem          string // why the scan stopped before the end of the file, or ""
}

// scanSegment reads the records of a segment of the given size, verifying
// each checksum. The first skip records count as delivered, and at most
// limit records are accepted (the next segment's base bounds this one).
// It stops at the first record that is incomplete or fails its checksum and
// says why in problem; only I/O errors are returned as errors.
func scanSegment(f *os.File, size int64, skip, limit uint64) (scanResult, error) {
	res := scanResult{end: segHeaderSize, skipEnd: segHeaderSize}
	if size <= segHeaderSize {
		return res, nil
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, segHeaderSize, size-segHeaderSize), 256<<10)
	var hdr [recHeaderSize]byte
	var payload []byte
	off := int64(segHeaderSize)
	for off < size {
		if res.n >= limit {
			res.problem = "records overlap the next segment"
			break
		}
		if size-off < recHeaderSize {
			res.problem = "incomplete record header"
			break
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return res, err
		}
		length := int64(binary.LittleEndian.Uint32(hdr[0:4]))
		if length > size-off-recHeaderSize {
			res.problem = "record length runs past the end of the file"
			break
		}
		if int64(cap(payload)) < length {
			payload = make([]byte, length)
		}
		payload = payload[:length]
		if _, err := io.ReadFull(r, payload); err != nil {
			return res, err
		}
		if recordCRC(hdr[0:4], payload) != binary.LittleEndian.Uint32(hdr[4:8]) {
			res.problem = "record checksum mismatch"
			break
		}
		off += recHeaderSize + length
		res.n++
		if res.n <= skip {
			res.skipped++
			res.skipEnd = off
		} else {
			res.undeliveredBytes += recHeaderSize + length
		}
	}
	res.end = off
	return res, nil
}

// readRecordLen reads the framed size of the record at off, which must end
// at or before end.
func readRecordLen(f *os.File, off, end int64) (int64, error) {
	var hdr [recHeaderSize]byte
	if _, err := f.ReadAt(hdr[:], off); err != nil {
		return 0, err
	}
	size := recHeaderSize + int64(binary.LittleEndian.Uint32(hdr[0:4]))
	if off+size > end {
		return 0, fmt.Errorf("%w: record at offset %d of %s runs past its committed end %d", ErrCorrupt, off, f.Name(), end)
	}
	return size, nil
}

// readRecord reads and verifies the record at off, which must end at or
// before end. It returns a fresh copy of the payload and the record's framed
// size.
func readRecord(f *os.File, off, end int64) ([]byte, int64, error) {
	var hdr [recHeaderSize]byte
	if _, err := f.ReadAt(hdr[:], off); err != nil {
		return nil, 0, err
	}
	length := int64(binary.LittleEndian.Uint32(hdr[0:4]))
	if off+recHeaderSize+length > end {
		return nil, 0, fmt.Errorf("%w: record at offset %d of %s runs past its committed end %d", ErrCorrupt, off, f.Name(), end)
	}
	payload := make([]byte, length)
	if _, err := f.ReadAt(payload, off+recHeaderSize); err != nil {
		return nil, 0, err
	}
	if recordCRC(hdr[0:4], payload) != binary.LittleEndian.Uint32(hdr[4:8]) {
		return nil, 0, fmt.Errorf("%w: record checksum mismatch at offset %d of %s", ErrCorrupt, off, f.Name())
	}
	return payload, recHeaderSize + length, nil
}

// readAckFile returns the persisted delivered position: 0 when there is no
// ack file yet, and 0 with a non-empty problem when it is unreadable as an
// ack file (everything is then redelivered: at least once, never lost).
func readAckFile(dir string) (acked uint64, problem string, err error) {
	b, err := os.ReadFile(filepath.Join(dir, ackName))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", err
	}
	acked, err = decodeHeader(ackMagic, b)
	if err != nil {
		return 0, err.Error(), nil
	}
	return acked, "", nil
}

// writeAckFile persists the delivered position atomically: write a
// temporary file, fsync it, rename it over the ack file, fsync the folder.
func writeAckFile(dir string, acked uint64) error {
	tmp := filepath.Join(dir, ackTmpName)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(encodeHeader(ackMagic, acked))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, ackName))
	}
	if err == nil {
		err = syncDir(dir)
	}
	return err
}

// syncDir fsyncs a folder so that file creations, renames and removals in it
// are durable. Windows cannot fsync a folder (NTFS journals its metadata),
// so it is skipped there.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}
