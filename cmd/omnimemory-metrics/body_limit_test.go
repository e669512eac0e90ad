package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"
)

// postLikeAScript sends one POST as a simple client does (Python's urllib,
// curl without Expect): the whole body first, and only then the answer is
// read. A server that closes while the body is still arriving makes such a
// client see a connection reset instead of its answer: writeErr or readErr
// then tell it. The body is size bytes of an unfinished JSON string (its
// content never matters: the limit is checked first); chunked sends it
// without a Content-Length.
func postLikeAScript(addr, path string, size int, chunked bool) (status int, writeErr, readErr error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err, nil
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	w := bufio.NewWriterSize(conn, 64<<10)
	fmt.Fprintf(w, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n", path, addr)
	if chunked {
		fmt.Fprintf(w, "Transfer-Encoding: chunked\r\n\r\n")
	} else {
		fmt.Fprintf(w, "Content-Length: %d\r\n\r\n", size)
	}
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	chunk[0] = '"'
	for sent := 0; sent < size && writeErr == nil; {
		n := min(len(chunk), size-sent)
		if chunked {
			fmt.Fprintf(w, "%x\r\n", n)
		}
		_, writeErr = w.Write(chunk[:n])
		if chunked && writeErr == nil {
			_, writeErr = w.WriteString("\r\n")
		}
		sent += n
	}
	if chunked && writeErr == nil {
		_, writeErr = w.WriteString("0\r\n\r\n")
	}
	if writeErr == nil {
		writeErr = w.Flush()
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, writeErr, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, writeErr, nil
}

// TestOversizedBodiesAlwaysGetTheir413: a body over its route's limit is
// answered 413 and the rest of it read and discarded (lingering close), so a
// client that writes its whole body before reading always gets the answer,
// never a connection reset; on the single and the batch endpoint, with and
// without a Content-Length, many times over.
func TestOversizedBodiesAlwaysGetTheir413(t *testing.T) {
	base := startInProcess(t, []string{"--listen", "127.0.0.1:0"},
		map[string]string{"SQLITE_DB_PATH": filepath.Join(t.TempDir(), "metrics.db")})
	addr := strings.TrimPrefix(base, "http://")
	const mib = 1 << 20
	for _, tc := range []struct {
		path  string
		sizes []int
	}{
		{api.PathTrackOperation, []int{2 * mib, 8 * mib}},
		{api.PathTrackOperations, []int{api.MaxBatchBodyBytes + 2*mib, api.MaxBatchBodyBytes + 8*mib}},
	} {
		for _, size := range tc.sizes {
			for _, chunked := range []bool{false, true} {
				name := fmt.Sprintf("%s/%dMiB/chunked=%v", tc.path, size/mib, chunked)
				t.Run(name, func(t *testing.T) {
					tries := 20
					if size > 8*mib {
						tries = 8
					}
					for i := range tries {
						status, werr, rerr := postLikeAScript(addr, tc.path, size, chunked)
						if werr != nil || rerr != nil || status != http.StatusRequestEntityTooLarge {
							t.Fatalf("try %d: status %d, write error %v, read error %v; want 413 after the whole body", i+1, status, werr, rerr)
						}
					}
				})
			}
		}
	}
	// The service still serves after all of them.
	if _, code, err := postOperation(http.DefaultClient, base, 1100); err != nil || code != http.StatusOK {
		t.Fatalf("post after the oversized bodies: %d %v", code, err)
	}
}
