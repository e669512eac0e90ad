package deploy_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
)

// repoRoot answers the module root, where the deployment files live.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := realtools.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// readYAML decodes the YAML file at path (relative to the repository root
// unless absolute) into v.
func readYAML(t testing.TB, path string, v any) {
	t.Helper()
	if !filepath.IsAbs(path) {
		path = filepath.Join(repoRoot(t), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// run runs name with args in dir and fails t, showing the output, when it
// does not succeed.
func run(t testing.TB, dir, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// globRepo answers the files matching pattern (relative to the repository
// root), relative to that root, and fails t when there are none.
func globRepo(t testing.TB, pattern string) []string {
	t.Helper()
	root := repoRoot(t)
	matches, err := filepath.Glob(filepath.Join(root, pattern))
	if err != nil {
		t.Fatal(err)
	}
	if len(matches) == 0 {
		t.Fatalf("no file matches %s", pattern)
	}
	for i, m := range matches {
		matches[i], _ = filepath.Rel(root, m)
	}
	return matches
}

// ruleFile is the shape of a Prometheus rule file.
type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Record      string            `yaml:"record"`
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// rules answers every rule of the repository's rule files.
func repoRules(t testing.TB) []rule {
	t.Helper()
	var all []rule
	for _, f := range globRepo(t, ruleFilesGlob) {
		var rf ruleFile
		readYAML(t, f, &rf)
		for _, g := range rf.Groups {
			all = append(all, g.Rules...)
		}
	}
	return all
}

// ruleFilesGlob names the rule files, as prometheus.yml loads them (relative
// to itself, at the repository root). rules/*.test.yml are promtool unit
// tests, not rule files.
const (
	ruleFilesGlob = "rules/*.rules.yml"
	ruleTestsGlob = "rules/*.test.yml"
)

// serviceJob is the scrape job of the service, which the rules name.
const serviceJob = "omnimemory-metrics"
