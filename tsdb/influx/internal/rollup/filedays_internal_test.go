package rollup

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"
)

// TestDocsQuoteTheFileRow: docs/influxdb.md quotes the size of a row of
// the cache of files per day as it is.
func TestDocsQuoteTheFileRow(t *testing.T) {
	b, err := os.ReadFile("../../../../docs/influxdb.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Join(strings.Fields(string(b)), " ")
	if want := fmt.Sprintf("rows (twice an hourly cache), %d bytes each", unsafe.Sizeof(fileRow{})); !strings.Contains(doc, want) {
		t.Errorf("docs/influxdb.md does not say %q", want)
	}
}
