package grafana

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
)

func TestMain(m *testing.M) {
	os.Exit(realtools.RunMain(m))
}

// seed is what the Flux test writes: operations of the tool_operation
// schema over the last hours, and the totals the dashboards must find.
type seed struct {
	start      time.Time // before the first operation
	operations int
	original   int64
	prevented  int64
	sessions   map[string]bool
	clients    []string // sorted: of operations or spend
	files      map[string]bool

	// Spend points: totals, and per client and per model.
	spent    float64
	tokens   int64
	byClient map[string]float64
	byModel  map[string]spendSeed
}

// spendSeed is the totals of the spend points of one model.
type spendSeed struct {
	cost   float64
	tokens [4]int64 // input, output, cache read, cache creation
}

// spendOnlyClient reports spend and no operation: the client variable must
// still list it.
const spendOnlyClient = "codex"

// seedModels are the models of the seeded spend points; the last needs
// escaping in line protocol.
var seedModels = []string{"claude-sonnet-4-5", "claude-opus-4-1", "gpt 5, mini"}

// Clients of the seeded operations. The last one needs escaping in line
// protocol and in Flux (Grafana renders ${tool_id:json} as a JSON array,
// whose string escapes Flux shares).
var seedClients = []string{"claude-code", "cursor", `vs code "beta", v2`}

// lpTag escapes a tag value for line protocol.
func lpTag(s string) string {
	return strings.NewReplacer(",", `\,`, "=", `\=`, " ", `\ `).Replace(s)
}

// lpString quotes a string field value for line protocol.
func lpString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// writeSeed writes a few hundred operations spread over the last six hours
// through the 1.x /write endpoint, as the InfluxDB store lays them out.
func writeSeed(t *testing.T, srv *realtools.Influxd, db string) seed {
	t.Helper()
	now := time.Now().UTC()
	s := seed{
		start:    now.Add(-7 * time.Hour),
		sessions: map[string]bool{},
		files:    map[string]bool{},
		clients:  append([]string{spendOnlyClient}, seedClients...),
		byClient: map[string]float64{},
		byModel:  map[string]spendSeed{},
	}
	sort.Strings(s.clients)
	tools := []string{"read", "search"}
	modes := []string{"full", "overview", "symbol", "references", "semantic", "tri_index"}
	var lp bytes.Buffer
	const n = 360
	for i := 0; i < n; i++ {
		// Every minute, and every tenth operation shares the previous
		// one's created_at: the store keeps them apart by a sub-µs offset.
		created := now.Add(-6 * time.Hour).Add(time.Duration(i) * time.Minute).Truncate(time.Microsecond)
		if i%10 == 1 {
			created = created.Add(-time.Minute)
		}
		ts := created.UnixNano() + int64(i%1000)
		tool, mode := tools[i%len(tools)], modes[i%len(modes)]
		client := seedClients[i%len(seedClients)]
		session := fmt.Sprintf("00000000-0000-4000-8000-%012d", i%7)
		original := int64(1000 + 37*i)
		actual := original / int64(2+i%5)
		prevented := original - actual
		if i%23 == 0 { // a tool that cost more than its baseline
			actual = original + 50
			prevented = -50
		}
		var file string
		if tool == "read" && i%3 != 0 { // file_path is absent when null
			file = fmt.Sprintf("src/pkg%d/file_%d.go", i%4, i%11)
			s.files[file] = true
		}
		// Every 50th operation has a twin at the very same time in the
		// same series: the store moves such a point to a series of its own
		// with a "dup" tag, which the dashboards must count like any other.
		dups := []string{""}
		if i%50 == 7 {
			dups = append(dups, ",dup=1")
		}
		for j, dup := range dups {
			fmt.Fprintf(&lp, "tool_operation%s,operation_mode=%s,session_id=%s,tool_id=%s,tool_name=%s ",
				dup, mode, session, lpTag(client), tool)
			if file != "" {
				fmt.Fprintf(&lp, "file_path=%s,", lpString(file))
			}
			fmt.Fprintf(&lp, "id=%s,parameters=%s,response_time_ms=%g,tokens_actual=%di,tokens_original=%di,tokens_prevented=%di %d\n",
				lpString(fmt.Sprintf("op-%04d-%d", i, j)), lpString(`{"path":"x","limit":5}`), float64(i%97)+0.5,
				actual, original, prevented, ts)
			s.operations++
			s.original += original
			s.prevented += prevented
		}
		s.sessions[session] = true
	}
	// Spend points every ten minutes per client, of every client and one
	// that reports no operation, as the InfluxDB store lays them out.
	spenders := append([]string{spendOnlyClient}, seedClients...)
	for i := 0; i < 36*len(spenders); i++ {
		client, model := spenders[i%len(spenders)], seedModels[i%len(seedModels)]
		at := now.Add(-6 * time.Hour).Add(time.Duration(i/len(spenders)) * 10 * time.Minute).Truncate(time.Microsecond)
		cost := float64(1+i%9) * 0.0125
		tok := [4]int64{int64(100 + i), int64(20 + i%13), int64(1000 * (i % 3)), int64(7 * (i % 5))}
		fmt.Fprintf(&lp, "llm_spend,model=%s,session_id=00000000-0000-4000-8000-%012d,tool_id=%s cost_usd=%g,tokens_input=%di,tokens_output=%di,tokens_cache_read=%di,tokens_cache_creation=%di %d\n",
			lpTag(model), i%5, lpTag(client), cost, tok[0], tok[1], tok[2], tok[3], at.UnixNano()+int64(i%1000))
		s.spent += cost
		s.byClient[client] += cost
		m := s.byModel[model]
		m.cost += cost
		for j, n := range tok {
			m.tokens[j] += n
			s.tokens += n
		}
		s.byModel[model] = m
	}
	u := srv.URL + "/write?" + url.Values{"db": {db}, "precision": {"ns"}}.Encode()
	resp, err := http.Post(u, "text/plain; charset=utf-8", &lp)
	if err != nil {
		t.Fatalf("write seed: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("write seed: %s: %s", resp.Status, body)
	}
	return s
}

// fluxResult is one answer of /api/v2/query in annotated CSV: its data rows
// as maps from column name to text.
type fluxResult []map[string]string

// runFlux runs one Flux query through the v2 compatibility API, the one
// Grafana's Flux mode calls on 1.8 and 2.x, and fails on any error.
func runFlux(ctx context.Context, srv *realtools.Influxd, query string) (fluxResult, error) {
	body, err := json.Marshal(map[string]any{
		"query":   query,
		"type":    "flux",
		"dialect": map[string]any{"header": true, "annotations": []string{"datatype", "group", "default"}},
	})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/api/v2/query", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/csv")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(raw))
	}
	return parseFluxCSV(raw)
}

// parseFluxCSV reads annotated CSV: tables separated by blank lines, each
// with #annotation rows, a header and data rows. An error travels in-band as
// a table whose columns are "error" and "reference".
func parseFluxCSV(raw []byte) (fluxResult, error) {
	var out fluxResult
	for _, block := range regexp.MustCompile(`\r?\n\r?\n`).Split(string(raw), -1) {
		if strings.TrimSpace(block) == "" {
			continue
		}
		r := csv.NewReader(strings.NewReader(block))
		r.FieldsPerRecord = -1
		records, err := r.ReadAll()
		if err != nil {
			return nil, fmt.Errorf("csv: %w: %q", err, block)
		}
		var header []string
		for _, rec := range records {
			if len(rec) > 0 && strings.HasPrefix(rec[0], "#") {
				continue
			}
			if header == nil {
				header = rec
				if slices.Contains(rec, "error") && slices.Contains(rec, "reference") {
					return nil, fmt.Errorf("flux error: %q", block)
				}
				continue
			}
			row := map[string]string{}
			for i, v := range rec {
				if i < len(header) && header[i] != "" {
					row[header[i]] = v
				}
			}
			out = append(out, row)
		}
	}
	return out, nil
}

var unresolved = regexp.MustCompile(`\$\{|\$[a-zA-Z_]|\bv\.[a-zA-Z]`)

// interpolate does what Grafana does before a Flux query leaves it:
// dashboard variables first (${bucket}, ${tool_id:json} as a JSON array),
// then the InfluxDB data source's textual macros v.timeRangeStart,
// v.timeRangeStop (RFC 3339 times) and v.windowPeriod (a duration).
func interpolate(query, bucket string, clients []string, start, stop time.Time, window string) (string, error) {
	set, err := json.Marshal(clients)
	if err != nil {
		return "", err
	}
	q := strings.NewReplacer(
		"${bucket}", bucket,
		"${tool_id:json}", string(set),
		"${cost_per_1k}", DefaultCostPer1K,
		"v.timeRangeStart", start.UTC().Format(time.RFC3339Nano),
		"v.timeRangeStop", stop.UTC().Format(time.RFC3339Nano),
		"v.windowPeriod", window,
	).Replace(query)
	if m := unresolved.FindString(q); m != "" {
		return "", fmt.Errorf("%q is left after interpolation", m)
	}
	return q, nil
}

// TestFluxQueriesRun runs every Flux query of the dashboards (panels and
// variables), with Grafana's variables filled in, against a real InfluxDB
// 1.8.3 (Flux 0.65) holding seeded operations, and checks that each
// answers rows without an error, and that the totals are right.
func TestFluxQueriesRun(t *testing.T) {
	srv := realtools.SharedInfluxd(t)
	bucket := srv.NewBucket(t)
	db := strings.TrimSuffix(bucket, "/autogen")
	s := writeSeed(t, srv, db)
	queries := fluxQueries(t)
	if len(queries) == 0 {
		t.Fatal("the dashboards hold no Flux query")
	}

	selections := []struct {
		name    string
		clients []string
	}{
		{"all clients", s.clients},
		{"one client", s.clients[2:]}, // the one that needs escaping
	}
	checked := map[string]bool{}
	for _, sel := range selections {
		for _, window := range []string{"1m", "1h"} {
			for _, q := range queries {
				t.Run(sel.name+"/"+window+"/"+q.name, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					text, err := interpolate(q.query, bucket, sel.clients, s.start, time.Now().Add(time.Second), window)
					if err != nil {
						t.Fatal(err)
					}
					rows, err := runFlux(ctx, srv, text)
					if err != nil {
						t.Fatalf("%v\nquery:\n%s", err, text)
					}
					if len(rows) == 0 {
						t.Fatalf("no rows\nquery:\n%s", text)
					}
					if sel.name == "all clients" && checkTotals(t, q.name, rows, s) {
						checked[q.name] = true
					}
				})
			}
		}
	}
	if len(checked) != totalChecks {
		t.Errorf("checked the values of %d queries, want %d (a panel was renamed?): %v", len(checked), totalChecks, checked)
	}
}

// totalChecks is how many queries checkTotals knows the answer of.
const totalChecks = 15

// checkTotals checks the answers whose value the seed fixes, and reports
// whether name is one of them.
func checkTotals(t *testing.T, name string, rows fluxResult, s seed) bool {
	t.Helper()
	single := func(want string) {
		t.Helper()
		if len(rows) != 1 || rows[0]["_value"] != want {
			t.Errorf("%s: got %v, want one row with _value %s", name, rows, want)
		}
	}
	switch {
	case strings.HasSuffix(name, ": Operations (A)"):
		single(strconv.Itoa(s.operations))
	case strings.HasSuffix(name, ": Tokens saved (A)"):
		single(strconv.FormatInt(s.prevented, 10))
	case strings.HasSuffix(name, ": Sessions (A)"):
		single(strconv.Itoa(len(s.sessions)))
	case strings.HasSuffix(name, ": Savings ratio (A)"):
		want := float64(s.prevented) / float64(s.original)
		got, err := strconv.ParseFloat(rows[0]["_value"], 64)
		if len(rows) != 1 || err != nil || math.Abs(got-want) > 1e-9 {
			t.Errorf("%s: got %v, want one row with _value %g", name, rows, want)
		}
	case strings.HasSuffix(name, ": variable tool_id"):
		var got []string
		for _, r := range rows {
			got = append(got, r["_value"])
		}
		if strings.Join(got, "\n") != strings.Join(s.clients, "\n") {
			t.Errorf("%s: got %q, want %q", name, got, s.clients)
		}
	case strings.HasSuffix(name, ": Top files by tokens saved (A)"):
		var ops int
		for _, r := range rows {
			if !s.files[r["file_path"]] {
				t.Errorf("%s: unknown file %q in %v", name, r["file_path"], r)
			}
			n, err := strconv.Atoi(r["operations"])
			if err != nil {
				t.Errorf("%s: operations %q: %v", name, r["operations"], err)
			}
			ops += n
		}
		if len(rows) != min(20, len(s.files)) {
			t.Errorf("%s: %d rows, want %d", name, len(rows), min(20, len(s.files)))
		}
		if ops == 0 {
			t.Errorf("%s: no operations counted", name)
		}
	case strings.HasSuffix(name, ": Totals by tool and mode (A)"):
		var ops int
		var saved int64
		for _, r := range rows {
			n, _ := strconv.Atoi(r["operations"])
			v, _ := strconv.ParseInt(r["tokens_saved"], 10, 64)
			ops += n
			saved += v
		}
		if ops != s.operations || saved != s.prevented {
			t.Errorf("%s: %d operations and %d tokens saved, want %d and %d", name, ops, saved, s.operations, s.prevented)
		}
	default:
		return checkSpendTotals(t, name, rows, s)
	}
	return true
}

// seedPrice is the dashboards' default price of a token, in US dollars.
func seedPrice(t *testing.T) float64 {
	t.Helper()
	p, err := strconv.ParseFloat(DefaultCostPer1K, 64)
	if err != nil {
		t.Fatal(err)
	}
	return p / 1000
}

// near reports whether got is want but for float rounding.
func near(got, want float64) bool {
	return math.Abs(got-want) <= 1e-9*math.Max(1, math.Abs(want))
}

// checkSpendTotals checks the answers of the spend row, and reports whether
// name is one of them.
func checkSpendTotals(t *testing.T, name string, rows fluxResult, s seed) bool {
	t.Helper()
	saved := float64(s.prevented) * seedPrice(t)
	num := func(r map[string]string, col string) float64 {
		t.Helper()
		v, err := strconv.ParseFloat(r[col], 64)
		if err != nil {
			t.Errorf("%s: column %s of %v: %v", name, col, r, err)
		}
		return v
	}
	single := func(want float64) {
		t.Helper()
		if len(rows) != 1 || !near(num(rows[0], "_value"), want) {
			t.Errorf("%s: got %v, want one row with _value %g", name, rows, want)
		}
	}
	sum := func(col string) (total float64) {
		for _, r := range rows {
			total += num(r, col)
		}
		return total
	}
	switch {
	case strings.HasSuffix(name, ": Dollars spent (A)"):
		single(s.spent)
	case strings.HasSuffix(name, ": Dollars saved (A)"):
		single(saved)
	case strings.HasSuffix(name, ": Savings share (A)"):
		single(saved / (s.spent + saved))
	case strings.HasSuffix(name, ": Tokens the tools used (A)"):
		single(float64(s.tokens))
	case strings.HasSuffix(name, ": Dollars spent and saved (A)"):
		if got := sum("spent"); !near(got, s.spent) {
			t.Errorf("%s: windows sum to %g spent, want %g", name, got, s.spent)
		}
	case strings.HasSuffix(name, ": Dollars spent and saved (B)"):
		if got := sum("saved"); !near(got, saved) {
			t.Errorf("%s: windows sum to %g saved, want %g", name, got, saved)
		}
	case strings.HasSuffix(name, ": Spent and saved by client (A)"):
		if len(rows) != len(s.clients) {
			t.Errorf("%s: %d rows, want one per client (%d): %v", name, len(rows), len(s.clients), rows)
		}
		var savedTotal float64
		for _, r := range rows {
			spent, sv, share := num(r, "spent"), num(r, "saved"), num(r, "share")
			if want := s.byClient[r["tool_id"]]; !near(spent, want) {
				t.Errorf("%s: %s spent %g, want %g", name, r["tool_id"], spent, want)
			}
			if r["tool_id"] == spendOnlyClient && (sv != 0 || share != 0) {
				t.Errorf("%s: %s saved %g (share %g), want 0: it has no operation", name, r["tool_id"], sv, share)
			}
			if spent+sv > 0 && !near(share, sv/(spent+sv)) {
				t.Errorf("%s: %s share %g, want %g", name, r["tool_id"], share, sv/(spent+sv))
			}
			savedTotal += sv
		}
		if !near(savedTotal, saved) {
			t.Errorf("%s: clients saved %g together, want %g", name, savedTotal, saved)
		}
	case strings.HasSuffix(name, ": Spend by model (A)"):
		if len(rows) != len(s.byModel) {
			t.Errorf("%s: %d rows, want one per model (%d): %v", name, len(rows), len(s.byModel), rows)
		}
		for _, r := range rows {
			want, ok := s.byModel[r["model"]]
			if !ok {
				t.Errorf("%s: unknown model %q", name, r["model"])
				continue
			}
			if got := num(r, "cost_usd"); !near(got, want.cost) {
				t.Errorf("%s: %s cost %g, want %g", name, r["model"], got, want.cost)
			}
			for i, f := range spendTokenFields {
				if got := num(r, f); got != float64(want.tokens[i]) {
					t.Errorf("%s: %s %s %g, want %d", name, r["model"], f, got, want.tokens[i])
				}
			}
		}
	default:
		return false
	}
	return true
}

func TestParseFluxCSVError(t *testing.T) {
	for _, in := range []string{
		"#datatype,string,string\n#group,true,true\n#default,,\n,error,reference\n,type error 2:1-2:136: duration != time,\n\n",
		"error,reference\ntype error,\n",
	} {
		if _, err := parseFluxCSV([]byte(in)); err == nil {
			t.Errorf("parseFluxCSV(%q) found no error", in)
		}
	}
	rows, err := parseFluxCSV([]byte("#datatype,string,long,long\n#group,false,false,false\n#default,_result,,\n,result,table,_value\n,,0,5\n\n"))
	if err != nil || len(rows) != 1 || rows[0]["_value"] != "5" {
		t.Errorf("parseFluxCSV: %v, %v", rows, err)
	}
}
