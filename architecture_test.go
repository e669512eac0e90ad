package omnimemorymetrics

import (
	"bytes"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/omnimemory/omnimemory-metrics"

// goPackage is what `go list -json` tells of a package.
type goPackage struct {
	ImportPath string
	Dir        string
	Standard   bool
	GoFiles    []string
	Deps       []string // every package it links, transitively
}

// listPackages answers `go list -json` of the patterns, run in dir.
func listPackages(t *testing.T, dir string, patterns ...string) []goPackage {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json=ImportPath,Dir,Standard,GoFiles,Deps"}, patterns...)...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list in %s: %v\n%s", dir, err, stderr.String())
	}
	var pkgs []goPackage
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p goPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatalf("go list in %s found no packages", dir)
	}
	return pkgs
}

// rel answers p's path within the module ("" for the root, "-" outside it).
func rel(p string) string {
	if p == module {
		return ""
	}
	if r, ok := strings.CutPrefix(p, module+"/"); ok {
		return r
	}
	return "-"
}

// under reports whether the module path r is dir or inside it.
func under(r, dir string) bool { return r == dir || strings.HasPrefix(r, dir+"/") }

// rule forbids the packages that match `of` to link packages that match
// `forbid` (module-relative paths; "testing" is the standard package).
type rule struct {
	why    string
	of     func(r string) bool
	forbid func(dep string) bool
}

func dirs(ds ...string) func(string) bool {
	return func(r string) bool {
		return slices.ContainsFunc(ds, func(d string) bool { return under(r, d) })
	}
}

// TestLayers holds the layering of docs/architecture.md: handlers -> the
// service layer (exporter) -> tsdb -> the stores, the wire types below them
// all, and no program linking package testing.
func TestLayers(t *testing.T) {
	stores := dirs("tsdb/sqlite", "tsdb/postgres", "tsdb/influx", "tsdb/storetest")
	rules := []rule{
		{"handlers are HTTP only: they call the service layer, never a store", dirs("handlers"),
			func(d string) bool { return stores(d) || under(d, "exporter/importer") || under(d, "internal/outbox") }},
		{"the service layer works on the tsdb interfaces, not on a store, and knows nothing of HTTP", dirs("exporter"),
			func(d string) bool { return stores(d) || under(d, "handlers") || under(d, "cmd") }},
		{"tsdb and the stores import nothing above them", dirs("tsdb"),
			func(d string) bool { return dirs("exporter", "handlers", "cmd", "ui", "grafana")(d) || d == "client" }},
		{"the SQLite store stands alone", dirs("tsdb/sqlite"), dirs("tsdb/postgres", "tsdb/influx")},
		{"the PostgreSQL store stands alone", dirs("tsdb/postgres"), dirs("tsdb/sqlite", "tsdb/influx")},
		{"the InfluxDB store stands alone", dirs("tsdb/influx"), dirs("tsdb/sqlite", "tsdb/postgres")},
		{"only programs import handlers", func(r string) bool { return r != "-" && !under(r, "cmd") && !under(r, "handlers") },
			dirs("handlers")},
		{"no program links package testing", dirs("cmd"), func(d string) bool { return d == "testing" }},
	}
	for _, p := range listPackages(t, ".", "./...") {
		r := rel(p.ImportPath)
		for _, rl := range rules {
			if !rl.of(r) {
				continue
			}
			for _, d := range p.Deps {
				dr := rel(d)
				if dr == "-" {
					dr = d // a package outside the module: by its own path
				}
				if rl.forbid(dr) {
					t.Errorf("%s links %s: %s", p.ImportPath, d, rl.why)
				}
			}
		}
	}
}

// TestHandlersUseSmallInterfaces: the handlers call the service layer
// through interfaces of their own, never through the whole tsdb.Store.
func TestHandlersUseSmallInterfaces(t *testing.T) {
	for _, p := range listPackages(t, ".", "./handlers") {
		fset := token.NewFileSet()
		for _, name := range p.GoFiles {
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				if sel, ok := n.(*ast.SelectorExpr); ok {
					if x, ok := sel.X.(*ast.Ident); ok && x.Name == "tsdb" && sel.Sel.Name == "Store" {
						t.Errorf("%s uses tsdb.Store: declare the small interface the route needs instead", fset.Position(sel.Pos()))
					}
				}
				return true
			})
		}
	}
}

// thirdPartyAllowed reports whether a package outside the standard library
// and the client module may be linked by the client module: uuid only.
func thirdPartyAllowed(p string) bool { return under(p, "github.com/google/uuid") }

// TestClientModulePullsInNothingOfTheServer: a tool author who imports the
// Go client (its own module, client/) links the standard library, uuid and
// the client itself; and the wire types (client/api), which the service
// shares, link the standard library and uuid only.
func TestClientModulePullsInNothingOfTheServer(t *testing.T) {
	clientPath := module + "/client"
	for _, p := range listPackages(t, "client", "./...") {
		if !strings.HasPrefix(p.ImportPath, clientPath) {
			t.Errorf("go list in client/ answered %s, outside the client module", p.ImportPath)
		}
		for _, d := range p.Deps {
			if strings.HasPrefix(d, clientPath+"/") || d == clientPath {
				if p.ImportPath == clientPath+"/api" {
					t.Errorf("the wire types link %s: they must link the standard library and uuid only", d)
				}
				continue
			}
			first, _, _ := strings.Cut(d, "/")
			if !strings.Contains(first, ".") { // the standard library
				continue
			}
			if !thirdPartyAllowed(d) {
				t.Errorf("%s links %s: the client module must link nothing of the server's", p.ImportPath, d)
			}
		}
	}
}
