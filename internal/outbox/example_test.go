package outbox_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/omnimemory/omnimemory-metrics/internal/outbox"
)

// A writer appends what InfluxDB refused or could not take; a drainer
// goroutine sends the oldest records on and acknowledges them.
func Example() {
	dir, err := os.MkdirTemp("", "outbox-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ob, err := outbox.Open(outbox.Options{Dir: dir, MaxBytes: 64 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer ob.Close()

	// The writer: durable on this machine once Append returns nil.
	if err := ob.Append([]byte("ops,tool=claude count=1i 1700000000000000000")); err != nil {
		log.Fatal(err) // outbox.ErrFull: push back on the client
	}

	// The drainer; send stands for a blocking write to InfluxDB.
	send := func(ctx context.Context, batch [][]byte) error {
		for _, b := range batch {
			fmt.Printf("sent %s\n", b)
		}
		return nil
	}
	ctx := context.Background()
	for ob.Len() > 0 {
		entries, err := ob.Peek(64)
		if err != nil {
			log.Fatal(err)
		}
		if len(entries) == 0 {
			<-ob.Wait() // sleep until something is appended
			continue
		}
		batch := make([][]byte, len(entries))
		for i, e := range entries {
			batch[i] = e.Data
		}
		if err := send(ctx, batch); err != nil {
			continue // retry with backoff; the entries stay in the outbox
		}
		if err := ob.Ack(entries[len(entries)-1].Seq); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("undelivered:", ob.Len())
	// Output:
	// sent ops,tool=claude count=1i 1700000000000000000
	// undelivered: 0
}
