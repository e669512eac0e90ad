package omnimemorymetrics

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/omnimemory/omnimemory-metrics/client/api"
)

// markdownFiles answers README.md and every page under docs/.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob("docs/*.md")
	if err != nil || len(pages) == 0 {
		t.Fatalf("no pages under docs/: %v", err)
	}
	return append([]string{"README.md"}, pages...)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	fence    = regexp.MustCompile("(?s)```.*?```")
	heading  = regexp.MustCompile(`(?m)^#{1,6} +(.+?)\s*$`)
	link     = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	slugDrop = regexp.MustCompile(`[^\p{L}\p{N} _-]`)
)

// anchors answers the anchors GitHub makes of a page's headings.
func anchors(page string) map[string]bool {
	out := map[string]bool{}
	for _, m := range heading.FindAllStringSubmatch(fence.ReplaceAllString(page, ""), -1) {
		slug := strings.ReplaceAll(slugDrop.ReplaceAllString(strings.ToLower(m[1]), ""), " ", "-")
		for n := 0; ; n++ { // repeated headings get -1, -2, ...
			s := slug
			if n > 0 {
				s = slug + "-" + strconv.Itoa(n)
			}
			if !out[s] {
				out[s] = true
				break
			}
		}
	}
	return out
}

// TestDocsLinksResolve: every relative link of the README and the pages
// under docs/ names a file of the repository, and every #anchor a heading
// of its page.
func TestDocsLinksResolve(t *testing.T) {
	for _, path := range markdownFiles(t) {
		text := readFile(t, path)
		for _, m := range link.FindAllStringSubmatch(fence.ReplaceAllString(text, ""), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			dest := path
			if file != "" {
				dest = filepath.Join(filepath.Dir(path), file)
				if _, err := os.Stat(dest); err != nil {
					t.Errorf("%s links %s: no such file", path, target)
					continue
				}
			}
			if anchor == "" || !strings.HasSuffix(dest, ".md") {
				continue
			}
			if !anchors(readFile(t, dest))[anchor] {
				t.Errorf("%s links %s: %s has no heading with that anchor", path, target, dest)
			}
		}
	}
}

// variable is a variable name the docs may mention.
var variable = regexp.MustCompile(`\b(?:OMNIMEMORY|INFLUXDB|SQLITE|DATABASE)_[A-Z0-9_]+\b`)

// TestDocsNameOnlyRealVariables: every variable the README and the pages
// mention is a setting of the service (docs/configuration.md, generated from
// the code), a variable the tests read (the table of docs/development.md),
// or one of the compose stack's (docker-compose.yml).
func TestDocsNameOnlyRealVariables(t *testing.T) {
	known := map[string]bool{}
	for _, v := range variable.FindAllString(readFile(t, "docs/configuration.md"), -1) {
		known[v] = true
	}
	for _, row := range strings.Split(readFile(t, "docs/development.md"), "\n") {
		if strings.HasPrefix(row, "| `") {
			for _, v := range variable.FindAllString(row, -1) {
				known[v] = true
			}
		}
	}
	for _, v := range variable.FindAllString(readFile(t, "docker-compose.yml"), -1) {
		known[v] = true
	}
	if len(known) < 10 {
		t.Fatalf("only %d variables found in docs/configuration.md and docs/development.md", len(known))
	}
	for _, path := range markdownFiles(t) {
		for _, v := range variable.FindAllString(readFile(t, path), -1) {
			if !known[v] {
				t.Errorf("%s names %s, which is no setting (docs/configuration.md) and no test variable (docs/development.md)", path, v)
			}
		}
	}
}

// apiPath is a path of the API as the docs write it in code.
var apiPath = regexp.MustCompile(`(?:GET|POST) (/[a-z0-9_/{}.-]*[a-z}])`)

// TestDocsNameOnlyRealEndpoints: every "GET /path" or "POST /path" the docs
// write is a path the service serves.
func TestDocsNameOnlyRealEndpoints(t *testing.T) {
	served := []string{api.PathTrackOperation, api.PathTrackOperations, api.PathOperations, api.PathOperationsExport,
		api.PathToolBreakdown, api.PathAPISavings, api.PathSpend, api.PathAggregate, api.PathSessionStart, api.PathSessionGetOrCreate, api.PathSessionsActive,
		api.PathSession, api.PathSessionHeartbeat, api.PathSessionEnd, api.PathHealth, api.PathReady, api.PathMetrics,
		api.PathOpenAPI, api.PathOTLPMetrics, api.PathStreamOperations, api.PathWSOperations, "/"}
	found := 0
	for _, path := range markdownFiles(t) {
		for _, m := range apiPath.FindAllStringSubmatch(readFile(t, path), -1) {
			found++
			p := strings.ReplaceAll(m[1], "{session_id}", "{id}")
			if !slices.Contains(served, p) && !strings.HasPrefix(p, "/ui/") {
				t.Errorf("%s names %s, which the service does not serve", path, m[0])
			}
		}
	}
	if found == 0 {
		t.Fatal("the docs name no endpoint")
	}
}
