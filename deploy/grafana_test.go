package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// Grafana dashboards' PromQL, run against the real Prometheus of TestStack.
//
// Every *.json under grafana/dashboards/ is read; every target of every
// panel (panels nested in rows included, and the legacy rows[].panels[]),
// and every query variable, whose data source is Prometheus is taken. A
// data source is Prometheus when its type is "prometheus", or when its uid
// (or the legacy plain string) is a dashboard variable of type datasource
// whose query is "prometheus" (${DS_PROMETHEUS}, $prometheus), or the uid or
// name of a Prometheus data source in grafana/provisioning/datasources/, or
// names Prometheus. A target without a data source inherits its panel's. A
// target with an "expr" whose data source cannot be resolved is taken too
// (only Prometheus targets carry "expr"; Flux targets carry "query").
//
// Grafana's variables are substituted before the query runs (see
// substituteGrafanaVars); each query then runs as an instant query and must
// answer at least one sample, except those in allowedEmpty.

// grafanaVarValues are the values given to Grafana's built-in variables.
var grafanaVarValues = []struct{ name, value string }{
	{"__rate_interval_ms", "60000"},
	{"__rate_interval", "1m"}, // >= 4 scrape intervals of 1s
	{"__interval_ms", "15000"},
	{"__interval", "15s"},
	{"__range_ms", "3600000"},
	{"__range_s", "3600"},
	{"__range", "1h"}, // a dashboard's range: the whole run fits in it
}

// allowedEmpty are queries that legitimately answer nothing in a healthy
// run: failure and overload series, which exist only once something failed.
// A query matching one of these patterns may be empty; any other may not.
var allowedEmpty = []allowance{
	{regexp.MustCompile(`omnimemory_ingest_shed_operations_total`), "no operation is refused in a healthy run: the series of a reason appears at its first shed operation"},
	{regexp.MustCompile(`code=~?"5`), "no request fails with a 5xx in a healthy run"},
	{regexp.MustCompile(`ALERTS`), "no alert fires in a healthy run"},
}

// allowance lets the queries matching pattern be empty, for reason.
type allowance struct {
	pattern *regexp.Regexp
	reason  string
}

// promQuery is one PromQL query of a dashboard.
type promQuery struct {
	where, expr string
}

// dashboardQueries answers the Prometheus queries of the dashboards, or
// ok=false when grafana/dashboards/ does not exist.
func dashboardQueries(t *testing.T) (queries []promQuery, ok bool) {
	t.Helper()
	root := repoRoot(t)
	dir := filepath.Join(root, "grafana", "dashboards")
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return nil, false
	}
	provisioned := provisionedDatasources(t)
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".json" {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var dash map[string]any
		if err := json.Unmarshal(b, &dash); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		// Some exports wrap the dashboard: {"dashboard": {...}}.
		if inner, ok := dash["dashboard"].(map[string]any); ok {
			dash = inner
		}
		rel, _ := filepath.Rel(root, path)
		queries = append(queries, queriesOfDashboard(rel, dash, provisioned)...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return queries, true
}

// queriesOfDashboard extracts the Prometheus queries of one dashboard.
func queriesOfDashboard(file string, dash map[string]any, provisioned map[string]bool) []promQuery {
	// Datasource variables: name -> is Prometheus.
	dsVars := map[string]bool{}
	templating, _ := dash["templating"].(map[string]any)
	vars, _ := templating["list"].([]any)
	for _, v := range vars {
		m, _ := v.(map[string]any)
		if m["type"] == "datasource" {
			q, _ := m["query"].(string)
			dsVars[str(m["name"])] = strings.EqualFold(q, "prometheus")
		}
	}
	isProm := func(ds any) (prom, known bool) {
		ref := ""
		switch d := ds.(type) {
		case nil:
			return false, false
		case string:
			ref = d
		case map[string]any:
			switch typ := str(d["type"]); typ {
			case "prometheus":
				return true, true
			case "", "datasource": // unset, or -- Mixed -- / -- Dashboard --
			default:
				return false, true
			}
			ref = str(d["uid"])
		}
		if name := varName(ref); name != "" {
			p, ok := dsVars[name]
			if ok {
				return p, true
			}
			return strings.Contains(strings.ToLower(name), "prometheus"), strings.Contains(strings.ToLower(name), "prometheus")
		}
		if p, ok := provisioned[ref]; ok {
			return p, true
		}
		if strings.Contains(strings.ToLower(ref), "prometheus") {
			return true, true
		}
		return false, false
	}

	var out []promQuery
	var walk func(panels []any, path string)
	walk = func(panels []any, path string) {
		for _, p := range panels {
			panel, _ := p.(map[string]any)
			title := path + "/" + str(panel["title"])
			panelProm, panelKnown := isProm(panel["datasource"])
			targets, _ := panel["targets"].([]any)
			for _, tg := range targets {
				target, _ := tg.(map[string]any)
				expr := strings.TrimSpace(str(target["expr"]))
				prom, known := isProm(target["datasource"])
				if !known {
					prom, known = panelProm, panelKnown
				}
				if !known {
					prom = expr != ""
				}
				if prom && expr != "" {
					out = append(out, promQuery{where: fmt.Sprintf("%s: panel %q target %s", file, title, str(target["refId"])), expr: expr})
				}
			}
			nested, _ := panel["panels"].([]any)
			walk(nested, title)
		}
	}
	panels, _ := dash["panels"].([]any)
	walk(panels, "")
	rows, _ := dash["rows"].([]any)
	for _, r := range rows {
		row, _ := r.(map[string]any)
		nested, _ := row["panels"].([]any)
		walk(nested, "/"+str(row["title"]))
	}

	// Query variables: label_values(metric, label) runs as the metric's
	// series; query_result(expr) as expr; label_values(label) and
	// metrics(...) need no data to list.
	for _, v := range vars {
		m, _ := v.(map[string]any)
		if m["type"] != "query" {
			continue
		}
		if prom, known := isProm(m["datasource"]); known && !prom {
			continue
		}
		q := str(m["query"])
		if qm, ok := m["query"].(map[string]any); ok {
			q = str(qm["query"])
		}
		if expr := variableQueryExpr(q); expr != "" {
			out = append(out, promQuery{where: fmt.Sprintf("%s: variable %q", file, str(m["name"])), expr: expr})
		}
	}
	return out
}

var (
	labelValuesRe = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`)
	queryResultRe = regexp.MustCompile(`^query_result\((.+)\)$`)
)

// variableQueryExpr turns a Prometheus variable query into the PromQL it
// stands for ("" when it runs none).
func variableQueryExpr(q string) string {
	q = strings.TrimSpace(q)
	if m := labelValuesRe.FindStringSubmatch(q); m != nil {
		return fmt.Sprintf("count by (%s) (%s)", m[2], m[1])
	}
	if m := queryResultRe.FindStringSubmatch(q); m != nil {
		return m[1]
	}
	return ""
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

var varRefRe = regexp.MustCompile(`\$\{([a-zA-Z_][a-zA-Z0-9_]*)(?::[a-zA-Z]+)?\}|\$([a-zA-Z_][a-zA-Z0-9_]*)|\[\[([a-zA-Z_][a-zA-Z0-9_]*)(?::[a-zA-Z]+)?\]\]`)

// varName answers the variable a data source reference names ("" when it
// is not one variable): ${DS_PROMETHEUS}, $prometheus, [[prometheus]].
func varName(ref string) string {
	m := varRefRe.FindStringSubmatch(strings.TrimSpace(ref))
	if m == nil || m[0] != strings.TrimSpace(ref) {
		return ""
	}
	return m[1] + m[2] + m[3]
}

var matcherRe = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"`)

// substituteGrafanaVars makes a dashboard's PromQL runnable outside Grafana:
//
//   - Grafana's built-ins take fixed values: $__rate_interval 1m,
//     $__interval 15s, $__range 1h (and their _ms/_s forms).
//   - A user variable in a label matcher's value matches anything: each
//     reference becomes .* and the matcher a regular expression (= to =~);
//     in a negative matcher it becomes a value no series has, so that it
//     excludes nothing (!= "__none__", !~ "__none__").
//   - A user variable anywhere else is an error: the test must learn its
//     meaning first.
func substituteGrafanaVars(expr string) (string, error) {
	for _, v := range grafanaVarValues {
		expr = strings.ReplaceAll(expr, "${"+v.name+"}", v.value)
		expr = regexp.MustCompile(`\$`+v.name+`\b`).ReplaceAllString(expr, v.value)
		expr = strings.ReplaceAll(expr, "[["+v.name+"]]", v.value)
	}
	expr = matcherRe.ReplaceAllStringFunc(expr, func(m string) string {
		parts := matcherRe.FindStringSubmatch(m)
		label, op, value := parts[1], parts[2], parts[3]
		if !varRefRe.MatchString(value) {
			return m
		}
		switch op {
		case "=", "=~":
			return fmt.Sprintf(`%s=~"%s"`, label, varRefRe.ReplaceAllString(value, ".*"))
		default:
			return fmt.Sprintf(`%s%s"%s"`, label, op, varRefRe.ReplaceAllString(value, "__none__"))
		}
	})
	if m := varRefRe.FindString(expr); m != "" {
		return "", fmt.Errorf("variable %s outside a label matcher: teach substituteGrafanaVars its value", m)
	}
	return expr, nil
}

// provisionedDatasources answers the uids and names of the data sources in
// grafana/provisioning/datasources/, each mapped to whether it is
// Prometheus.
func provisionedDatasources(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	files, _ := filepath.Glob(filepath.Join(repoRoot(t), "grafana", "provisioning", "datasources", "*.y*ml"))
	for _, f := range files {
		var doc struct {
			Datasources []struct {
				Name string `yaml:"name"`
				UID  string `yaml:"uid"`
				Type string `yaml:"type"`
			} `yaml:"datasources"`
		}
		readYAML(t, f, &doc)
		for _, d := range doc.Datasources {
			for _, k := range []string{d.Name, d.UID} {
				if k != "" {
					out[k] = d.Type == "prometheus"
				}
			}
		}
	}
	return out
}

// checkDashboardQueries runs every dashboard query on prom. When
// grafana/dashboards/ does not exist at all there is nothing to check; when
// it exists it must hold Prometheus queries.
func checkDashboardQueries(t *testing.T, prom *prometheus) {
	queries, ok := dashboardQueries(t)
	if !ok {
		t.Skip("grafana/dashboards/ does not exist: no dashboard to check")
	}
	if len(queries) == 0 {
		t.Fatal("grafana/dashboards/ holds no Prometheus query")
	}
	var empty []string
	allowedN := 0
	for _, q := range queries {
		expr, err := substituteGrafanaVars(q.expr)
		if err != nil {
			t.Errorf("%s: %v\n  %s", q.where, err, q.expr)
			continue
		}
		samples, err := prom.query(expr)
		if err != nil {
			t.Errorf("%s: %v\n  %s", q.where, err, expr)
			continue
		}
		if len(samples) > 0 {
			continue
		}
		allowed := false
		for _, a := range allowedEmpty {
			if a.pattern.MatchString(q.expr) {
				allowed = true
				allowedN++
				t.Logf("%s: empty, allowed: %s\n  %s", q.where, a.reason, expr)
				break
			}
		}
		if !allowed {
			empty = append(empty, fmt.Sprintf("%s\n  %s", q.where, expr))
		}
	}
	sort.Strings(empty)
	for _, e := range empty {
		t.Errorf("no data: %s", e)
	}
	t.Logf("%d dashboard queries run: %d empty as allowed, %d empty in error", len(queries), allowedN, len(empty))
}

// TestSubstituteGrafanaVars shows the substitution of Grafana's variables.
func TestSubstituteGrafanaVars(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{`sum(rate(omnimemory_tool_operations_total[$__rate_interval]))`, `sum(rate(omnimemory_tool_operations_total[1m]))`, ""},
		{`increase(x[${__range}])`, `increase(x[1h])`, ""},
		{`avg_over_time(x[$__interval]) * $__range_s`, `avg_over_time(x[15s]) * 3600`, ""},
		{`sum(x{tool_id="$tool_id"})`, `sum(x{tool_id=~".*"})`, ""},
		{`sum(x{tool_id=~"${tool_id:regex}", tool_name="read"})`, `sum(x{tool_id=~".*", tool_name="read"})`, ""},
		{`x{tool_id=~"^$tool_id$"}`, `x{tool_id=~"^.*$"}`, ""},
		{`x{tool_id!="$excluded"}`, `x{tool_id!="__none__"}`, ""},
		{`x{mode=~"[[mode]]"}`, `x{mode=~".*"}`, ""},
		{`topk($n, x)`, "", "variable $n outside a label matcher"},
	} {
		got, err := substituteGrafanaVars(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s:\n got  %s (%v)\n want %s", tc.in, got, err, tc.want)
		}
	}
}

// TestDashboardQueryExtraction shows which targets are taken: by type, by a
// datasource variable (${DS_PROMETHEUS} and $prometheus), inherited from
// the panel, nested in a collapsed row; Flux targets are not.
func TestDashboardQueryExtraction(t *testing.T) {
	dash := map[string]any{}
	if err := json.Unmarshal([]byte(`{
	  "templating": {"list": [
	    {"type": "datasource", "name": "DS_PROMETHEUS", "query": "prometheus"},
	    {"type": "datasource", "name": "prometheus", "query": "prometheus"},
	    {"type": "datasource", "name": "DS_INFLUXDB", "query": "influxdb"},
	    {"type": "query", "name": "tool_id", "datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"},
	     "query": {"query": "label_values(omnimemory_tool_operations_total, tool_id)"}}
	  ]},
	  "panels": [
	    {"title": "a", "datasource": {"uid": "${DS_PROMETHEUS}"}, "targets": [{"refId": "A", "expr": "a"}]},
	    {"title": "b", "targets": [{"refId": "A", "datasource": "$prometheus", "expr": "b"}]},
	    {"title": "c", "targets": [{"refId": "A", "datasource": {"type": "prometheus", "uid": "x"}, "expr": "c"}]},
	    {"title": "flux", "datasource": {"type": "influxdb", "uid": "${DS_INFLUXDB}"}, "targets": [{"refId": "A", "query": "from()"}]},
	    {"title": "row", "type": "row", "panels": [
	      {"title": "d", "datasource": {"uid": "${DS_PROMETHEUS}"}, "targets": [{"refId": "A", "expr": "d"}]},
	      {"title": "e", "datasource": {"uid": "${DS_INFLUXDB}"}, "targets": [{"refId": "A", "expr": "not promql"}]}
	    ]}
	  ]
	}`), &dash); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, q := range queriesOfDashboard("d.json", dash, nil) {
		got = append(got, q.expr)
	}
	want := []string{"a", "b", "c", "d", "count by (tool_id) (omnimemory_tool_operations_total)"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("queries %q, want %q", got, want)
	}
}
