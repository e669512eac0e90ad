package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
)

// sampleOps are five operations of one tool (claude-code): 98,000 tokens
// original, 14,300 actual, 83,700 prevented; 1.2555 USD saved at the default
// 0.015 USD per 1,000 tokens; one cache hit and one miss, the rest unknown.
var sampleOps = []map[string]any{
	{"tool_name": "read", "operation_mode": "full", "tokens_original": 5000, "tokens_actual": 5000, "response_time_ms": 12.5},
	{"tool_name": "read", "operation_mode": "overview", "tokens_original": 5000, "tokens_actual": 500, "response_time_ms": 40, "cache_hit": true},
	{"tool_name": "read", "operation_mode": "symbol", "tokens_original": 8000, "tokens_actual": 800, "response_time_ms": 25, "cache_hit": false},
	{"tool_name": "search", "operation_mode": "semantic", "tokens_original": 50000, "tokens_actual": 5000, "response_time_ms": 250.3},
	{"tool_name": "search", "operation_mode": "tri_index", "tokens_original": 30000, "tokens_actual": 3000, "response_time_ms": 180},
}

const (
	sampleTool      = "claude-code"
	sampleSession   = "123e4567-e89b-12d3-a456-426614174000"
	sampleOriginal  = 98000
	sampleActual    = 14300
	samplePrevented = 83700
	samplePrice     = 0.015
	// What the tool reports spending per export (under the alert's 1 USD
	// an hour, so that a healthy run fires nothing).
	sampleSpendUSD   = 0.25
	sampleSpendInput = 1200
)

// rulesWithoutData are the recording rules that answer nothing in the
// stack's healthy run, with the reason; every other rule must yield data.
// The rules must still evaluate without error (waitRulesHealthy).
var rulesWithoutData = map[string]string{}

// TestStack runs the real service and a real Prometheus that scrapes it
// every second with the repository's rules loaded, and checks what
// Prometheus then answers: the token sums, dollars, every recording rule,
// no alert in a healthy run, and every PromQL query of the Grafana
// dashboards.
//
// Three replicas of the service run, as in production behind one job: one
// on the embedded SQLite store, which receives the five sample operations
// (the exact sums are asserted on it), one on a real InfluxDB 1.8, so that
// the store's own metrics (outbox, write latency, write errors by kind)
// exist for the dashboards' queries too, and one on a real PostgreSQL 15
// with docker-compose.yml's postgres profile settings.
func TestStack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the service, InfluxDB and Prometheus")
	}
	promBin := realtools.Require(t, "prometheus")
	influx := realtools.NewInfluxd(t)
	bucket := influx.NewBucket(t)
	root := repoRoot(t)
	dir := t.TempDir()

	bin := buildService(t, root, dir)
	lite := startService(t, bin, "sqlite", map[string]string{
		"OMNIMEMORY_DB_TYPE": "sqlite",
		"SQLITE_DB_PATH":     filepath.Join(dir, "sqlite", "metrics.db"),
	})
	flux, err := tryStartService(t, bin, "influxdb", map[string]string{
		"OMNIMEMORY_DB_TYPE":    "influxdb",
		"INFLUXDB_URL":          influx.URL,
		"INFLUXDB_BUCKET":       bucket,
		"OMNIMEMORY_OUTBOX_DIR": filepath.Join(dir, "outbox"),
	})
	if err != nil {
		t.Fatal(err)
	}
	pg := startComposePostgresService(t, bin)
	targets := []string{lite.addr, flux.addr, pg.addr}

	// Phase A: the five operations, before Prometheus first scrapes, and
	// what the tool reported spending, as Claude Code exports it.
	for _, op := range sampleOps {
		lite.track(t, op, sampleTool, http.StatusOK)
	}
	lite.spend(t, sampleSpendUSD, sampleSpendInput)
	prom := startPrometheus(t, promBin, dir, targets...)
	prom.waitValue(t, `sum(up{job="`+serviceJob+`"})`, float64(len(targets)))
	prom.waitValue(t, `sum(omnimemory_tool_operations_total)`, float64(len(sampleOps)))

	t.Run("sums", func(t *testing.T) {
		for q, want := range map[string]float64{
			`sum(omnimemory_tool_tokens_prevented_total)`:                               samplePrevented,
			`sum(omnimemory_tool_tokens_original_total)`:                                sampleOriginal,
			`sum(omnimemory_tool_tokens_actual_total)`:                                  sampleActual,
			`sum(omnimemory_tool_operations_total{tool_id="` + sampleTool + `"})`:       5,
			`sum(omnimemory_tool_operations_total{tool_name="read"})`:                   3,
			`sum(omnimemory_tool_operations_total{tool_name="search"})`:                 2,
			`sum(omnimemory_tool_tokens_prevented_total{tool_name="read"})`:             4500 + 7200,
			`sum(omnimemory_tool_tokens_prevented_total{tool_name="search"})`:           45000 + 27000,
			`sum(omnimemory_tool_tokens_prevented_total{operation_mode="full"})`:        0,
			`max(omnimemory_cost_per_1k_tokens_usd)`:                                    samplePrice,
			`sum(omnimemory_llm_cost_usd_total)`:                                        sampleSpendUSD,
			`sum(omnimemory_llm_tokens_total{type="input"})`:                            sampleSpendInput,
			`sum(omnimemory_tool_operation_savings_ratio_count)`:                        5,
			`sum(omnimemory_tool_cache_lookups_total)`:                                  2,
			`sum(omnimemory_tool_cache_hits_total)`:                                     1,
			`sum(omnimemory_tool_operation_duration_seconds_count{tool_name="search"})`: 2,
			// Dollars saved: the recording rules' join, applied to the
			// counters at this instant. 83,700 / 1000 * 0.015 = 1.2555.
			`sum(omnimemory_tool_tokens_prevented_total) / 1000 * on () group_left () max(omnimemory_cost_per_1k_tokens_usd)`: 1.2555,
		} {
			if got := prom.value(t, q); !near(got, want) {
				t.Errorf("%s = %v, want %v", q, got, want)
			}
		}
	})

	// Phase B, once Prometheus holds phase A: the five operations again, so
	// that the rates over every window are positive; an operation that cost
	// more than its baseline, on the InfluxDB replica and another tool; and
	// one rejected request.
	for _, op := range sampleOps {
		lite.track(t, op, sampleTool, http.StatusOK)
	}
	lite.spend(t, sampleSpendUSD, sampleSpendInput)
	flux.track(t, map[string]any{"tool_name": "read", "operation_mode": "references", "tokens_original": 1000,
		"tokens_actual": 1200, "tokens_prevented": -200, "response_time_ms": 8}, "cursor", http.StatusOK)
	lite.track(t, map[string]any{"tool_name": "write", "operation_mode": "full", "tokens_original": 1,
		"tokens_actual": 1, "response_time_ms": 1}, sampleTool, http.StatusUnprocessableEntity)
	prom.waitValue(t, `sum(omnimemory_tool_operations_total)`, 11)

	t.Run("recording rules", func(t *testing.T) {
		ratio := float64(samplePrevented) / sampleOriginal
		for q, want := range map[string]float64{
			`tool_id:omnimemory_tool_savings_ratio:rate1h{tool_id="claude-code"}`:                                          ratio,
			`tool_id:omnimemory_tool_savings_ratio:rate7d{tool_id="claude-code"}`:                                          ratio,
			`tool_name_operation_mode:omnimemory_tool_savings_ratio:rate1h{tool_name="read",operation_mode="full"}`:        0,
			`tool_name_operation_mode:omnimemory_tool_savings_ratio:rate1h{tool_name="read",operation_mode="overview"}`:    0.9,
			`tool_name_operation_mode:omnimemory_tool_savings_ratio:rate1h{tool_name="search",operation_mode="tri_index"}`: 0.9,
			// Dollars per second are tokens per second times the price.
			`tool_id:omnimemory_tool_saved_usd:rate5m{tool_id="claude-code"} / tool_id:omnimemory_tool_tokens_prevented:rate5m{tool_id="claude-code"}`: samplePrice / 1000,
			`sum(tool_name_operation_mode:omnimemory_tool_saved_usd:rate5m) / sum(tool_name_operation_mode:omnimemory_tool_tokens_prevented:rate5m)`:   samplePrice / 1000,
			// The per-mode and per-tool rules are sums of the same counters.
			`sum(tool_name_operation_mode:omnimemory_tool_tokens_original:rate5m) / sum(tool_id:omnimemory_tool_tokens_original:rate5m)`:                   1,
			`sum(tool_name_operation_mode:omnimemory_tool_tokens_prevented:rate5m) / sum(tool_name_operation_mode:omnimemory_tool_tokens_original:rate5m)`: ratio,
			`sum(tool_name_operation_mode:omnimemory_tool_tokens_actual:rate5m) / sum(tool_name_operation_mode:omnimemory_tool_tokens_original:rate5m)`:    float64(sampleActual) / sampleOriginal,
			`sum(tool_name_operation_mode:omnimemory_tool_operations:rate5m) / sum(tool_id:omnimemory_tool_operations:rate5m)`:                             1,
		} {
			prom.waitValue(t, q, want)
		}
		// Every recording rule of the repository yields data, except those
		// of rulesWithoutData, which must still have none (a stale
		// exemption fails).
		exempted := 0
		for _, r := range repoRules(t) {
			if r.Record == "" {
				continue
			}
			if reason, ok := rulesWithoutData[r.Record]; ok {
				exempted++
				if s, err := prom.query(r.Record); err != nil || len(s) > 0 {
					t.Errorf("%s: %d samples (err %v), exempted as empty (%s): drop it from rulesWithoutData", r.Record, len(s), err, reason)
				} else {
					t.Logf("%s: empty, allowed: %s", r.Record, reason)
				}
				continue
			}
			prom.waitValue(t, `count(`+r.Record+`) > 0`, math.NaN())
		}
		if exempted != len(rulesWithoutData) {
			t.Errorf("rulesWithoutData names %d rules, of which %d are recording rules of %s", len(rulesWithoutData), exempted, ruleFilesGlob)
		}
		if got := prom.value(t, `sum(omnimemory_tool_tokens_overspent_total)`); got != 200 {
			t.Errorf("overspent tokens = %v, want 200", got)
		}
	})

	t.Run("rules healthy, no alerts", func(t *testing.T) {
		prom.waitRulesHealthy(t)
		var alerts struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		}
		prom.api(t, "/api/v1/alerts", nil, &alerts)
		for _, a := range alerts.Alerts {
			t.Errorf("alert %s is %s in a healthy run: %v", a.Labels["alertname"], a.State, a.Labels)
		}
	})

	t.Run("dashboard queries", func(t *testing.T) {
		// Every series of the service has samples enough for a rate over
		// the 1m that $__rate_interval stands for, the series born in
		// phase B included.
		var names []string
		prom.api(t, "/api/v1/label/__name__/values", url.Values{"match[]": {`{__name__=~"omnimemory_.+"}`}}, &names)
		for _, name := range names {
			prom.waitValue(t, `min(count_over_time(`+name+`[1m])) >= 5`, math.NaN())
		}
		checkDashboardQueries(t, prom)
	})
}

// startComposePostgresService starts a replica as docker-compose.yml's
// postgres profile configures it, on a real PostgreSQL that holds the
// profile's user (an owner of its database, not a superuser, as the
// postgres image makes it) and database; only the host and port of its
// DATABASE_URL change, from the compose service's name to the local server.
func startComposePostgresService(t *testing.T, bin string) *service {
	t.Helper()
	user, password, db, dbURL := composePostgres(t)
	srv := realtools.NewPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, q := range []string{
		fmt.Sprintf(`CREATE ROLE %q LOGIN PASSWORD '%s'`, user, strings.ReplaceAll(password, "'", "''")),
		fmt.Sprintf(`CREATE DATABASE %q OWNER %q`, db, user),
	} {
		if err := srv.Exec(ctx, q); err != nil {
			t.Fatalf("postgres: %s: %v", q, err)
		}
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(srv.Port))
	return startService(t, bin, "postgresql", map[string]string{"OMNIMEMORY_DB_TYPE": "postgresql", "DATABASE_URL": u.String()})
}

// near reports whether got equals want to nine significant digits; a NaN
// want accepts any value.
func near(got, want float64) bool {
	if math.IsNaN(want) {
		return !math.IsNaN(got)
	}
	return math.Abs(got-want) <= 1e-9*math.Max(1, math.Abs(want))
}

// buildService builds the service once, from the module root, as the
// Dockerfile does.
func buildService(t *testing.T, root, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "omnimemory-metrics")
	run(t, root, "go", "build", "-o", bin, "./cmd/omnimemory-metrics")
	return bin
}

// freeAddr answers a free loopback address.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// process is a program started by a test, its output kept for failures.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// start starts a program and stops it (SIGTERM, then SIGKILL after 10 s)
// when t ends.
func start(t *testing.T, name string, env []string, bin string, args ...string) *process {
	t.Helper()
	p := &process{name: name, cmd: exec.Command(bin, args...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out.tail(4000))
		}
	})
	return p
}

// waitReady polls url until it answers 200, failing t after 60 s or when
// the process exits.
func (p *process) waitReady(t *testing.T, url string) {
	t.Helper()
	if err := p.ready(url); err != nil {
		t.Fatal(err)
	}
}

// ready polls url until it answers 200; it answers an error after 60 s or
// when the process exits.
func (p *process) ready(url string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return &exitedError{name: p.name, output: p.out.tail(4000)}
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready at %s after 60s (last error %v):\n%s", p.name, url, err, p.out.tail(4000))
		}
	}
}

// exitedError: a process exited before it was ready.
type exitedError struct{ name, output string }

func (e *exitedError) Error() string {
	return e.name + " exited before it was ready:\n" + e.output
}

// service is one running replica of omnimemory-metrics.
type service struct {
	addr string
}

func startService(t *testing.T, bin, name string, settings map[string]string) *service {
	t.Helper()
	s, err := tryStartService(t, bin, name, settings)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tryStartService starts a replica and answers an error when it does not
// become ready (the process is stopped when t ends, whatever happens).
func tryStartService(t *testing.T, bin, name string, settings map[string]string) (*service, error) {
	t.Helper()
	addr := freeAddr(t)
	home := t.TempDir()
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "OMNIMEMORY_LISTEN=" + addr, "OMNIMEMORY_LOG_LEVEL=warn"}
	for k, v := range settings {
		env = append(env, k+"="+v)
	}
	p := start(t, "omnimemory-metrics ("+name+")", env, bin)
	if err := p.ready("http://" + addr + "/ready"); err != nil {
		return nil, err
	}
	return &service{addr: addr}, nil
}

// spend posts one OTLP/HTTP JSON export of Claude Code's spend: usd, input
// tokens and a fixed count of the three other kinds (written as
// the OTLP specification's JSON examples write it), ending now.
func (s *service) spend(t *testing.T, usd float64, input int) {
	t.Helper()
	end := time.Now()
	point := func(v, attrs string) string {
		return `{"attributes":[{"key":"model","value":{"stringValue":"claude-sonnet-4-5"}}` + attrs + `],` +
			`"startTimeUnixNano":"` + strconv.FormatInt(end.Add(-time.Minute).UnixNano(), 10) + `",` +
			`"timeUnixNano":"` + strconv.FormatInt(end.UnixNano(), 10) + `","asDouble":` + v + `}`
	}
	sum := func(name, unit, points string) string {
		return `{"name":"` + name + `","unit":"` + unit + `","sum":{"aggregationTemporality":1,"isMonotonic":true,"dataPoints":[` + points + `]}}`
	}
	body := `{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"` + sampleTool + `"}}]},` +
		`"scopeMetrics":[{"scope":{"name":"com.anthropic.claude_code"},"metrics":[` +
		sum("claude_code.cost.usage", "USD", point(strconv.FormatFloat(usd, 'g', -1, 64), "")) + `,` +
		sum("claude_code.token.usage", "tokens", strings.Join([]string{
			point(strconv.Itoa(input), `,{"key":"type","value":{"stringValue":"input"}}`),
			point("80", `,{"key":"type","value":{"stringValue":"output"}}`),
			point("5000", `,{"key":"type","value":{"stringValue":"cacheRead"}}`),
			point("300", `,{"key":"type","value":{"stringValue":"cacheCreation"}}`),
		}, ",")) +
		`]}]}]}`
	resp, err := http.Post("http://"+s.addr+"/v1/metrics", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || strings.Contains(string(answer), "rejected") {
		t.Fatalf("POST /v1/metrics: %d %s", resp.StatusCode, answer)
	}
}

// track posts one operation of tool and expects status.
func (s *service) track(t *testing.T, op map[string]any, tool string, status int) {
	t.Helper()
	body := map[string]any{"session_id": sampleSession, "tool_id": tool, "parameters": map[string]any{}}
	for k, v := range op {
		body[k] = v
	}
	b, _ := json.Marshal(body)
	resp, err := http.Post("http://"+s.addr+"/track/tool-operation", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("POST /track/tool-operation %s: %d %s, want %d", b, resp.StatusCode, answer, status)
	}
}

// prometheus is a running Prometheus server.
type prometheus struct {
	base string
}

// startPrometheus starts Prometheus on a free loopback port, scraping the
// targets every second as the job of the service, with copies of the
// repository's rule files whose groups are evaluated every second (a group's
// own interval, such as the 7-day ratio's 5m, would leave it unevaluated
// for minutes; the expressions are unchanged).
func startPrometheus(t *testing.T, bin, dir string, targets ...string) *prometheus {
	t.Helper()
	rulesDir := filepath.Join(dir, "rules")
	if err := os.MkdirAll(rulesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range globRepo(t, ruleFilesGlob) {
		var doc map[string]any
		readYAML(t, f, &doc)
		groups, _ := doc["groups"].([]any)
		for _, g := range groups {
			delete(g.(map[string]any), "interval")
		}
		b, err := yaml.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rulesDir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	config := map[string]any{
		"global":     map[string]any{"scrape_interval": "1s", "evaluation_interval": "1s"},
		"rule_files": []string{filepath.Join(rulesDir, filepath.Base(ruleFilesGlob))},
		"scrape_configs": []any{map[string]any{
			"job_name":       serviceJob,
			"static_configs": []any{map[string]any{"targets": targets}},
		}},
	}
	b, err := yaml.Marshal(config)
	if err != nil {
		t.Fatal(err)
	}
	configFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	p := start(t, "prometheus", []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, bin,
		"--config.file="+configFile,
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	p.waitReady(t, "http://"+addr+"/-/ready")
	return &prometheus{base: "http://" + addr}
}

// api GETs path with params from Prometheus's HTTP API and decodes its data
// into data; it answers the API's error, if any.
func (p *prometheus) apiErr(path string, params url.Values, data any) error {
	u := p.base + path
	if params != nil {
		u += "?" + params.Encode()
	}
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var answer struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return fmt.Errorf("GET %s: %d: %w", u, resp.StatusCode, err)
	}
	if answer.Status != "success" {
		return fmt.Errorf("GET %s: %d %s", u, resp.StatusCode, answer.Error)
	}
	return json.Unmarshal(answer.Data, data)
}

func (p *prometheus) api(t *testing.T, path string, params url.Values, data any) {
	t.Helper()
	if err := p.apiErr(path, params, data); err != nil {
		t.Fatal(err)
	}
}

// sample is one element of an instant query's answer.
type sample struct {
	Metric map[string]string `json:"metric"`
	Value  float64
}

// query runs an instant query now and answers its samples (a scalar answer
// is one sample without labels).
func (p *prometheus) query(q string) ([]sample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.apiErr("/api/v1/query", url.Values{"query": {q}}, &data); err != nil {
		return nil, err
	}
	parse := func(pair [2]any) (float64, error) {
		s, _ := pair[1].(string)
		return strconv.ParseFloat(s, 64)
	}
	switch data.ResultType {
	case "vector":
		var raw []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(data.Result, &raw); err != nil {
			return nil, err
		}
		out := make([]sample, len(raw))
		for i, r := range raw {
			v, err := parse(r.Value)
			if err != nil {
				return nil, err
			}
			out[i] = sample{Metric: r.Metric, Value: v}
		}
		return out, nil
	case "scalar":
		var pair [2]any
		if err := json.Unmarshal(data.Result, &pair); err != nil {
			return nil, err
		}
		v, err := parse(pair)
		return []sample{{Value: v}}, err
	case "matrix":
		var raw []json.RawMessage
		if err := json.Unmarshal(data.Result, &raw); err != nil {
			return nil, err
		}
		return make([]sample, len(raw)), nil
	default:
		return nil, fmt.Errorf("query %s: result type %q", q, data.ResultType)
	}
}

// value answers the single value of q now, failing t unless there is
// exactly one sample.
func (p *prometheus) value(t *testing.T, q string) float64 {
	t.Helper()
	s, err := p.query(q)
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 1 {
		t.Fatalf("%s: %d samples %v, want 1", q, len(s), s)
	}
	return s[0].Value
}

// waitValue polls q until it answers one sample near want (any value when
// want is NaN), failing t after 60 s.
func (p *prometheus) waitValue(t *testing.T, q string, want float64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		s, err := p.query(q)
		if err == nil && len(s) == 1 && near(s[0].Value, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: after 60s: %v (err %v), want one sample of %v", q, s, err, want)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitRulesHealthy waits until every rule was evaluated and fails t on any
// rule whose evaluation failed.
func (p *prometheus) waitRulesHealthy(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var data struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		}
		p.api(t, "/api/v1/rules", nil, &data)
		var unknown, n int
		var bad []string
		for _, g := range data.Groups {
			for _, r := range g.Rules {
				n++
				switch r.Health {
				case "ok":
				case "unknown":
					unknown++
				default:
					bad = append(bad, fmt.Sprintf("%s/%s: %s %s", g.Name, r.Name, r.Health, r.LastError))
				}
			}
		}
		if len(bad) > 0 {
			t.Fatalf("rules failing:\n%s", strings.Join(bad, "\n"))
		}
		if n == 0 {
			t.Fatal("Prometheus loaded no rules")
		}
		if unknown == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d rules still unevaluated after 60s", unknown, n)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a process's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}
