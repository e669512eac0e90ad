package deploy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
)

// TestPromtool runs the real promtool on the repository's Prometheus files,
// as an operator would from the repository's root.
func TestPromtool(t *testing.T) {
	promtool := realtools.Require(t, "promtool")
	root := repoRoot(t)

	t.Run("check config", func(t *testing.T) {
		// Also loads and checks the rule files prometheus.yml names, relative
		// to it: the same relative path docker-compose.yml mounts them at.
		out := run(t, root, promtool, "check", "config", "--lint-fatal", "prometheus.yml")
		if !strings.Contains(out, "rule files found") || strings.Contains(out, " 0 rule files found") {
			t.Errorf("promtool check config found no rule files:\n%s", out)
		}
		t.Log(out)
	})
	t.Run("check rules", func(t *testing.T) {
		args := append([]string{"check", "rules", "--lint=all", "--lint-fatal"}, globRepo(t, ruleFilesGlob)...)
		t.Log(run(t, root, promtool, args...))
	})
	t.Run("test rules", func(t *testing.T) {
		args := append([]string{"test", "rules"}, globRepo(t, ruleTestsGlob)...)
		t.Log(run(t, root, promtool, args...))
	})
}

// TestRulesFolderHoldsOnlyRulesAndTests: every file in rules/ is checked by
// one of the globs above, so none escapes promtool.
func TestRulesFolderHoldsOnlyRulesAndTests(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join(repoRoot(t), "rules"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		rules, _ := filepath.Match(filepath.Base(ruleFilesGlob), e.Name())
		tests, _ := filepath.Match(filepath.Base(ruleTestsGlob), e.Name())
		if e.IsDir() || rules == tests {
			t.Errorf("rules/%s is neither a rule file (%s) nor a promtool test (%s)", e.Name(), ruleFilesGlob, ruleTestsGlob)
		}
	}
}

// requiredAlerts are the alerts the observability pack promises.
var requiredAlerts = []string{
	"OmnimemorySavingsRatioDropped",
	"OmnimemorySavingsShareDropped",
	"OmnimemoryToolSilent",
	"OmnimemoryStoreWriteErrors",
	"OmnimemoryOutboxBacklogGrowing",
	"OmnimemoryIngestShedding",
	"OmnimemoryTargetDown",
}

// recordNamePattern is the level:metric:operations convention
// (https://prometheus.io/docs/practices/rules/): labels kept, the metric
// without _total, what was done to it.
var recordNamePattern = regexp.MustCompile(`^[a-z][a-z0-9_]*:omnimemory_[a-z0-9_]+:[a-z0-9_]+$`)

// TestRulesConventions checks what promtool does not: recording rule names,
// each alert's severity and runbook annotations, the runbook sections they
// link to, and that the unit tests show every alert both firing and not
// firing and every recording rule's value.
func TestRulesConventions(t *testing.T) {
	rules := repoRules(t)
	tests := readRuleTests(t)

	alerts := map[string]bool{}
	for _, r := range rules {
		switch {
		case r.Record != "":
			if !recordNamePattern.MatchString(r.Record) {
				t.Errorf("recording rule %s: not level:omnimemory_metric:operations", r.Record)
			}
			if !tests.exprs[r.Record] {
				t.Errorf("recording rule %s: no promql_expr_test in %s shows its value", r.Record, ruleTestsGlob)
			}
			if strings.HasSuffix(strings.Split(r.Record, ":")[1], "_total") {
				t.Errorf("recording rule %s: drop _total from the metric part once rated", r.Record)
			}
		case r.Alert != "":
			alerts[r.Alert] = true
			if !strings.HasPrefix(r.Alert, "Omnimemory") {
				t.Errorf("alert %s: name does not start with Omnimemory", r.Alert)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("alert %s: severity label %q, want warning or critical", r.Alert, s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("alert %s: no %s annotation", r.Alert, a)
				}
			}
			want := runbookBase + runbookAnchor(r.Alert)
			if r.Annotations["runbook_url"] != want {
				t.Errorf("alert %s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
			}
		}
	}
	for _, a := range requiredAlerts {
		if !alerts[a] {
			t.Errorf("alert %s is missing", a)
		}
	}
	anchors := runbookAnchors(t)
	for a := range alerts {
		if !anchors[runbookAnchor(a)] {
			t.Errorf("alert %s: no section %q (anchor #%s) in %s",
				a, "## "+a, runbookAnchor(a), runbooksFile)
		}
		if !tests.firing[a] {
			t.Errorf("alert %s: no promtool test shows it firing", a)
		}
		if !tests.silent[a] {
			t.Errorf("alert %s: no promtool test shows it not firing", a)
		}
	}
}

// runbooksFile holds the runbooks, one section per alert headed by the
// alert's name; runbookBase is its address on GitHub.
const (
	runbooksFile = "docs/runbooks.md"
	runbookBase  = "https://github.com/omnimemory/omnimemory-metrics/blob/main/" + runbooksFile + "#"
)

// runbookAnchor is GitHub's anchor of the heading "<alert>".
func runbookAnchor(alert string) string {
	return githubAnchor(alert)
}

// githubAnchor turns a Markdown heading into the anchor GitHub gives it:
// lower case, punctuation dropped, spaces to hyphens.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// runbookAnchors answers the heading anchors of runbooksFile.
func runbookAnchors(t *testing.T) map[string]bool {
	anchors := map[string]bool{}
	for _, f := range []string{runbooksFile} {
		b, err := os.ReadFile(filepath.Join(repoRoot(t), f))
		if err != nil {
			t.Fatal(err)
		}
		inFence := false
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				inFence = !inFence
			}
			if !inFence && strings.HasPrefix(line, "#") {
				anchors[githubAnchor(strings.TrimLeft(line, "#"))] = true
			}
		}
	}
	return anchors
}

// ruleTests summarises the promtool unit tests: the expressions whose
// values they check, and the alerts they show firing or not firing.
type ruleTests struct {
	exprs          map[string]bool
	firing, silent map[string]bool
}

func readRuleTests(t *testing.T) ruleTests {
	rt := ruleTests{exprs: map[string]bool{}, firing: map[string]bool{}, silent: map[string]bool{}}
	for _, f := range globRepo(t, ruleTestsGlob) {
		var file struct {
			Tests []struct {
				AlertRuleTest []struct {
					Alertname string `yaml:"alertname"`
					ExpAlerts []any  `yaml:"exp_alerts"`
				} `yaml:"alert_rule_test"`
				PromQLExprTest []struct {
					Expr       string `yaml:"expr"`
					ExpSamples []any  `yaml:"exp_samples"`
				} `yaml:"promql_expr_test"`
			} `yaml:"tests"`
		}
		readYAML(t, f, &file)
		for _, tg := range file.Tests {
			for _, a := range tg.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					rt.firing[a.Alertname] = true
				} else {
					rt.silent[a.Alertname] = true
				}
			}
			for _, e := range tg.PromQLExprTest {
				if len(e.ExpSamples) > 0 {
					rt.exprs[strings.TrimSpace(e.Expr)] = true
				}
			}
		}
	}
	return rt
}

// TestAlertmanagerConfig checks alertmanager/alertmanager.yml: every
// receiver a route names exists; with amtool at hand ($OMNIMEMORY_AMTOOL or
// .tools/bin/amtool, which scripts/provision.sh does not install), also
// `amtool check-config`.
func TestAlertmanagerConfig(t *testing.T) {
	var cfg struct {
		Route     map[string]any `yaml:"route"`
		Receivers []struct {
			Name string `yaml:"name"`
		} `yaml:"receivers"`
	}
	readYAML(t, alertmanagerConfig, &cfg)
	var names []string
	for _, r := range cfg.Receivers {
		names = append(names, r.Name)
	}
	var walk func(r map[string]any, path string)
	walk = func(r map[string]any, path string) {
		if recv, ok := r["receiver"].(string); ok && !slices.Contains(names, recv) {
			t.Errorf("%s: receiver %q is not among %v", path, recv, names)
		}
		subs, _ := r["routes"].([]any)
		for i, s := range subs {
			if m, ok := s.(map[string]any); ok {
				walk(m, fmt.Sprintf("%s.routes[%d]", path, i))
			}
		}
	}
	if cfg.Route == nil || cfg.Route["receiver"] == nil {
		t.Fatalf("%s: no route with a default receiver", alertmanagerConfig)
	}
	walk(cfg.Route, "route")

	amtool, err := realtools.Find("amtool")
	if err != nil {
		t.Logf("amtool check-config not run: %v", err)
		return
	}
	t.Log(run(t, repoRoot(t), amtool, "check-config", alertmanagerConfig))
}

// alertmanagerConfig is Alertmanager's configuration, relative to the
// repository's root.
const alertmanagerConfig = "alertmanager/alertmanager.yml"
