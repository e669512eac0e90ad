// Package outbox is a durable, bounded, on-disk FIFO queue of opaque records:
// the local outbox that holds what InfluxDB has not yet taken. Appenders
// (many goroutines) add records; one drainer goroutine reads the oldest with
// Peek, sends them on, and calls Ack once they are delivered.
//
// # Guarantees
//
//   - Append returns nil only after its records are written and fsynced
//     (concurrent Appends are grouped into one write and one fsync by a
//     single flusher goroutine). Such records survive a process crash
//     (kill -9) and power loss, assuming the disk honours fsync.
//   - An Append either succeeds for all its records or for none (a failed
//     write is truncated away); it is never silently dropped. When the
//     undelivered bytes would exceed Options.MaxBytes, Append returns ErrFull
//     and writes nothing, so the caller can push back or retry.
//   - Records come out of Peek in append order, each with a sequence number
//     that increases by one per record (it may jump where corruption cut
//     records out, see below). A sequence number is reused only for a
//     record Append never acknowledged (a torn tail), or after damage to
//     the last segment (see Recovery).
//   - Ack(seq) persists the delivered position (fsynced, atomic) before it
//     returns, so acknowledged records are not returned again after a
//     restart. Delivery is at least once: if the process dies after
//     InfluxDB took a batch but before Ack returned, that batch is delivered
//     again. The InfluxDB store makes this harmless by writing idempotent
//     points (same measurement, tags and timestamp overwrite).
//   - Open never refuses to start because of a torn or corrupt tail: it
//     reports what it discards through the logger and keeps everything
//     intact, so a crash can never turn into a crash loop.
//
// A folder belongs to one open Outbox at a time; on Unix systems Open takes
// an exclusive lock (flock) on it and fails if another holds it.
//
// # File format
//
// The folder holds segment files, an ack file and a lock file:
//
//	00000000000000000001.seg  segment whose first record has sequence number 1
//	00000000000000004097.seg  next segment, first record 4097
//	acked                     the highest delivered sequence number
//	LOCK                      held with flock while the outbox is open
//
// A segment starts with a 20-byte header: the magic "OMOBSEG1", the base
// sequence number (uint64 little-endian, equal to the one in the file name)
// and a CRC-32C (Castagnoli) of those 16 bytes. Records follow back to back,
// each framed as
//
//	length   uint32 little-endian, payload bytes
//	crc      uint32 little-endian, CRC-32C of the 4 length bytes and the payload
//	payload  length bytes
//
// A record's sequence number is its segment's base plus its index in the
// segment. Segments are append-only; a new one is started when the active
// one would grow past Options.SegmentBytes (one Append is never split across
// segments, so a segment can exceed it by one group). Creating or removing a
// segment is followed by an fsync of the folder.
//
// The ack file is 20 bytes: the magic "OMOBACK1", the highest delivered
// sequence number and a CRC-32C of both. It is replaced atomically (write a
// temporary file, fsync, rename, fsync the folder). Segments whose records
// are all delivered are then deleted; the active segment is kept.
//
// # Recovery
//
// Open reads every segment and verifies every checksum. In the last segment,
// the first incomplete record or checksum mismatch starts the torn tail: it
// and everything after it are discarded, the file is truncated to the intact
// part, and a warning gives the offset and the number of bytes discarded.
// Only a write that Append had not yet acknowledged can be torn, so nothing
// acknowledged is lost that way. (Corruption in the middle of the last
// segment cannot be told apart from a torn tail and is handled the same.)
//
// Corruption in the middle of an earlier segment (which was complete and
// fsynced before the next one was created, so this is damage, not a crash)
// keeps the records before it, is logged as an error with the number of
// bytes skipped, and skips the rest of that segment: those records are
// lost, and their sequence numbers are missing from what Peek returns. The
// file itself is left as it is until its records are delivered.
//
// A missing or damaged ack file is reported and treated as "nothing
// delivered": everything still on disk is delivered again.
package outbox
