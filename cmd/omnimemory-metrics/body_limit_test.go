package main

import (
	"bufio"
	"bytes"
	"errors"
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
// without a Content-Length. With expect the client asks "Expect:
// 100-continue" first, as curl does, and sends the body only after a 100.
// closed tells that the answer said "Connection: close" and the server then
// closed the connection, so nothing after the answer on that connection
// (the rest of a body) is taken for another request.
func postLikeAScript(addr, path string, size int, chunked, expect bool) (status int, closed bool, writeErr, readErr error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, false, err, nil
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(conn)
	w := bufio.NewWriterSize(conn, 64<<10)
	fmt.Fprintf(w, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n", path, addr)
	if expect {
		fmt.Fprintf(w, "Expect: 100-continue\r\n")
	}
	if chunked {
		fmt.Fprintf(w, "Transfer-Encoding: chunked\r\n\r\n")
	} else {
		fmt.Fprintf(w, "Content-Length: %d\r\n\r\n", size)
	}
	if expect {
		if writeErr = w.Flush(); writeErr != nil {
			return 0, false, writeErr, nil
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return 0, false, nil, err
		}
		if resp.StatusCode != http.StatusContinue { // answered without the body
			return finish(resp, br)
		}
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
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, false, writeErr, err
	}
	status, closed, _, readErr = finish(resp, br)
	return status, closed, writeErr, readErr
}

// finish reads resp's body and tells whether the server then closes the
// connection (it sends nothing more and the read ends at EOF).
func finish(resp *http.Response, br *bufio.Reader) (status int, closed bool, writeErr, readErr error) {
	_, readErr = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Close {
		_, err := br.ReadByte()
		closed = errors.Is(err, io.EOF)
	}
	return resp.StatusCode, closed, nil, readErr
}

// TestOversizedBodiesAlwaysGetTheir413: a body over its route's limit is
// answered 413 and the rest of it read and discarded (lingering close), so a
// client that writes its whole body before reading always gets the answer,
// never a connection reset, and the connection is closed after it; on the
// single and the batch endpoint, with and without a Content-Length, with and
// without "Expect: 100-continue", many times over.
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
				for _, expect := range []bool{false, true} {
					name := fmt.Sprintf("%s/%dMiB/chunked=%v/expect=%v", tc.path, size/mib, chunked, expect)
					t.Run(name, func(t *testing.T) {
						tries := 20
						if size > 8*mib || expect {
							tries = 4
						}
						for i := range tries {
							status, closed, werr, rerr := postLikeAScript(addr, tc.path, size, chunked, expect)
							if werr != nil || rerr != nil || status != http.StatusRequestEntityTooLarge {
								t.Fatalf("try %d: status %d, write error %v, read error %v; want 413 after the whole body", i+1, status, werr, rerr)
							}
							if !closed {
								t.Fatalf("try %d: the 413 did not close the connection: what follows could be read as another request", i+1)
							}
						}
					})
				}
			}
		}
	}
	// The service still serves after all of them.
	if _, code, err := postOperation(http.DefaultClient, base, 1100); err != nil || code != http.StatusOK {
		t.Fatalf("post after the oversized bodies: %d %v", code, err)
	}
}
