package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/omnimemory/omnimemory-metrics/client"

	"github.com/omnimemory/omnimemory-metrics/client/api"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/omnimemory/omnimemory-metrics/exporter"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// reportSettings are the settings the report takes when it reads the store
// itself (without --url).
var reportSettings = []string{
	"db-type", "sqlite-db-path", "database-url", "influxdb-url", "influxdb-token", "influxdb-org", "influxdb-bucket",
	"query-timeout", "influx-cache-ttl", "cost-per-1k-tokens",
}

// runReport serves `omnimemory-metrics report`: 0 when the report was
// printed, 1 when the service or the store could not answer, 2 for bad
// flags.
func runReport(ctx context.Context, args []string, p proc) int {
	getenv, stdout, stderr := p.getenv, p.stdout, p.stderr
	const name = "report"
	fs := commandFlags(name, "[--range 1h|24h|7d|30d|all] [--tool-id X] [--url http://host:8003 [--token T]] [--format table|json|markdown]",
		"print the savings of a time range: totals, by tool, by mode and a trend; from a running service (--url) "+
			"or straight from the configured store", stderr)
	rangeName := fs.String("range", "24h", "time range: "+exporter.RangeNames(exporter.SavingsRanges))
	toolID := fs.String("tool-id", "", "only the operations of this tool_id")
	base := fs.String("url", "", "ask the service at this URL instead of reading the store")
	token := fs.String("token", "", "API token for --url (default: $OMNIMEMORY_API_TOKEN)")
	timeout := fs.Duration("timeout", 10*time.Second, "longest the report waits for the service or the store")
	format := fs.String("format", "table", "table, json or markdown")
	resolve := settingFlags(fs, getenv, reportSettings...)
	if code, ok := parseCommand(fs, args, stderr, name); !ok {
		return code
	}
	rng, ok := exporter.ParseTimeRange(*rangeName, exporter.SavingsRanges)
	if !ok {
		return usageError(stderr, name, fmt.Errorf("--range=%q: must be one of %s", *rangeName, exporter.RangeNames(exporter.SavingsRanges)))
	}
	render, ok := reportFormats[*format]
	if !ok {
		return usageError(stderr, name, fmt.Errorf("--format=%q: must be table, json or markdown", *format))
	}
	if *timeout <= 0 {
		return usageError(stderr, name, fmt.Errorf("--timeout=%s: must be positive", *timeout))
	}
	cfg, err := resolve()
	if err != nil {
		return usageError(stderr, name, err)
	}
	if *token == "" {
		*token = getenv("OMNIMEMORY_API_TOKEN")
	}
	var svc *client.Client
	if *base != "" {
		u, err := url.Parse(*base)
		if err == nil && (u.Scheme != "http" && u.Scheme != "https" || u.Host == "") {
			err = errors.New("must be an http:// or https:// URL")
		}
		if err == nil {
			svc, err = client.New(*base, client.WithToken(*token), client.WithTimeout(*timeout),
				client.WithUserAgent("omnimemory-metrics-report/"+version))
		}
		if err != nil {
			return usageError(stderr, name, fmt.Errorf("--url=%q: %v", *base, err))
		}
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var data reportData
	if svc != nil {
		data, err = fetchFromService(ctx, svc, rng, *toolID)
	} else {
		data, err = fetchFromConfiguredStore(ctx, cfg, rng, *toolID, p)
	}
	if err != nil {
		fmt.Fprintf(stderr, "omnimemory-metrics report: %v\n", err)
		return 1
	}
	out, err := render(buildReport(data))
	if err != nil {
		fmt.Fprintf(stderr, "omnimemory-metrics report: %v\n", err)
		return 1
	}
	if _, err := stdout.Write(out); err != nil {
		return 1
	}
	return 0
}

// reportData are the answers a report is made of, exactly as the service's
// /metrics/api-savings and /metrics/tool-breakdown give them.
type reportData struct {
	rng     exporter.TimeRange
	toolID  string
	savings api.APISavings
	// breakdown is nil when it cannot be had for the range: the service
	// answers /metrics/tool-breakdown for 1h to 30d, so for "all" only
	// when every operation lies within the last 30 days.
	breakdown *api.ToolBreakdown
	spend     *api.Spend
}

// fetchFromService asks the service through the Go client.
func fetchFromService(ctx context.Context, svc *client.Client, rng exporter.TimeRange, toolID string) (reportData, error) {
	data := reportData{rng: rng, toolID: toolID}
	savings, err := svc.APISavings(ctx, client.SavingsQuery{TimeRange: rng.Name, ToolID: toolID})
	if err != nil {
		return data, fmt.Errorf("asking the service: %w", err)
	}
	data.savings = *savings
	bdRange := rng
	if rng.Duration == 0 {
		bdRange = exporter.Range30d
	}
	bd, err := svc.ToolBreakdown(ctx, client.BreakdownQuery{TimeRange: bdRange.Name, ToolID: toolID})
	if err != nil {
		return data, fmt.Errorf("asking the service: %w", err)
	}
	if rng.Duration > 0 || coversAll(*bd, data.savings) {
		data.breakdown = bd
	}
	if data.spend, err = svc.Spend(ctx, client.SpendQuery{TimeRange: rng.Name, ToolID: toolID}); err != nil {
		return data, fmt.Errorf("asking the service: %w", err)
	}
	return data, nil
}

// coversAll reports whether a 30-day breakdown holds every operation of an
// "all" answer: the same count, tokens processed and tokens prevented.
func coversAll(bd api.ToolBreakdown, s api.APISavings) bool {
	return bd.Read.TotalOperations+bd.Search.TotalOperations == s.TotalOperations &&
		bd.Read.TotalTokensOriginal+bd.Search.TotalTokensOriginal == s.TotalTokensProcessed &&
		bd.TotalTokensPrevented == s.TotalTokensPrevented
}

// fetchFromConfiguredStore opens the configured store and answers as the
// service would. The embedded store is opened as a second user of its file,
// which SQLite allows while the service runs on it; the report only reads.
// InfluxDB is opened with a private, temporary outbox, so that it never
// competes with a running service's; PostgreSQL is shared by design.
func fetchFromConfiguredStore(ctx context.Context, cfg config, rng exporter.TimeRange, toolID string, p proc) (reportData, error) {
	switch cfg.DBType {
	case dbTypePostgres: // a shared database: nothing to prepare
	case dbTypeInflux:
		dir, err := os.MkdirTemp("", "omnimemory-report-")
		if err != nil {
			return reportData{}, err
		}
		defer os.RemoveAll(dir)
		cfg.OutboxDir, cfg.OutboxMaxBytes, cfg.WriteTimeout = dir, 1<<20, 5*time.Second
	default:
		if _, err := os.Stat(cfg.SQLitePath); err != nil {
			return reportData{}, fmt.Errorf("no embedded store at %s (SQLITE_DB_PATH); give --sqlite-db-path, or --url of a running service: %w", cfg.SQLitePath, err)
		}
	}
	store, err := openStore(ctx, cfg, prometheus.NewRegistry(), commandLogger(p.stderr), false)
	if err != nil {
		return reportData{}, err
	}
	rep := exporter.NewReporter(store, exporter.Pricing{PerThousandUSD: cfg.CostPer1K}, p.now)
	data, err := fetchFromStore(ctx, rep, rng, toolID)
	return data, errors.Join(err, store.Close())
}

// fetchFromStore answers with rep what the service answers. For "all" the
// breakdown covers all time: a store can give it, unlike the service.
func fetchFromStore(ctx context.Context, rep *exporter.Reporter, rng exporter.TimeRange, toolID string) (reportData, error) {
	data := reportData{rng: rng, toolID: toolID}
	var err error
	if data.savings, err = rep.APISavings(ctx, rng, toolID); err != nil {
		return data, err
	}
	bd, err := rep.ToolBreakdown(ctx, rng, toolID)
	if err != nil {
		return data, err
	}
	data.breakdown = &bd
	spend, err := rep.Spend(ctx, rng, toolID)
	if err != nil {
		return data, err
	}
	data.spend = &spend
	return data, nil
}

// report is what the report shows, in every format; fields the answers do
// not give (see reportData.breakdown) are nil.
type report struct {
	TimeRange    string       `json:"time_range"`
	ToolID       *string      `json:"tool_id"`
	WindowStart  *string      `json:"window_start"`
	CalculatedAt string       `json:"calculated_at"`
	Totals       reportTotals `json:"totals"`
	ByTool       []reportTool `json:"by_tool"`
	ByMode       []reportMode `json:"by_mode"`
	Trend        reportTrend  `json:"trend"`
	// Spend is what the tools reported spending, beside the savings; absent
	// when none was reported.
	Spend *reportSpend `json:"spend,omitempty"`
	step  tsdb.Step    // of the trend
	rng   exporter.TimeRange
}

type reportTotals struct {
	Operations        int64   `json:"operations"`
	TokensOriginal    int64   `json:"tokens_original"`
	TokensActual      *int64  `json:"tokens_actual"`
	TokensPrevented   int64   `json:"tokens_prevented"`
	CostBaseline      float64 `json:"cost_baseline"`
	CostActual        float64 `json:"cost_actual"`
	CostSaved         float64 `json:"cost_saved"`
	SavingsPercentage float64 `json:"savings_percentage"`
}

type reportTool struct {
	Tool              string   `json:"tool"`
	Operations        int64    `json:"operations"`
	TokensOriginal    *int64   `json:"tokens_original"`
	TokensActual      *int64   `json:"tokens_actual"`
	TokensPrevented   int64    `json:"tokens_prevented"`
	CostSaved         float64  `json:"cost_saved"`
	SavingsPercentage *float64 `json:"savings_percentage"`
	AvgResponseTimeMs *float64 `json:"avg_response_time_ms"`
}

type reportMode struct {
	Mode              string   `json:"mode"`
	Operations        int64    `json:"operations"`
	TokensPrevented   int64    `json:"tokens_prevented"`
	CostSaved         float64  `json:"cost_saved"`
	AvgResponseTimeMs *float64 `json:"avg_response_time_ms"`
}

type reportSpend struct {
	CostSpent              float64            `json:"cost_spent"`
	CostSaved              float64            `json:"cost_saved"`
	SavingsSharePercentage float64            `json:"savings_share_percentage"`
	Tokens                 api.SpendTokens    `json:"tokens"`
	ByModel                []reportModelSpend `json:"by_model"`
}

type reportModelSpend struct {
	Model   string  `json:"model"`
	CostUSD float64 `json:"cost"`
	api.SpendTokens
}

type reportTrend struct {
	Step   string           `json:"step"`
	Points []api.TrendPoint `json:"points"`
}

// buildReport turns the answers into the report.
func buildReport(d reportData) report {
	s, bd := d.savings, d.breakdown
	r := report{
		TimeRange:    string(d.rng.Name),
		CalculatedAt: api.FormatTime(s.CalculatedAt),
		step:         d.rng.Step,
		rng:          d.rng,
		Totals: reportTotals{
			Operations:        s.TotalOperations,
			TokensOriginal:    s.TotalTokensProcessed,
			TokensPrevented:   s.TotalTokensPrevented,
			CostBaseline:      s.APICostBaseline,
			CostActual:        s.APICostActual,
			CostSaved:         s.TotalCostSaved,
			SavingsPercentage: s.SavingsPercentage,
		},
		Trend: reportTrend{Step: d.rng.Step.String(), Points: s.Trends},
	}
	if r.Trend.Points == nil {
		r.Trend.Points = []api.TrendPoint{}
	}
	if d.toolID != "" {
		r.ToolID = &d.toolID
	}
	if d.rng.Duration > 0 {
		start := api.FormatTime(s.CalculatedAt.Add(-d.rng.Duration))
		r.WindowStart = &start
	}
	if bd != nil {
		actual := bd.Read.TotalTokensActual + bd.Search.TotalTokensActual
		r.Totals.TokensActual = &actual
	}
	for _, tool := range api.ToolNames {
		sv := s.BreakdownByTool.Read
		if tool == api.ToolSearch {
			sv = s.BreakdownByTool.Search
		}
		row := reportTool{Tool: tool, Operations: sv.Operations, TokensPrevented: sv.TokensPrevented, CostSaved: sv.CostSaved}
		if bd != nil {
			ts := bd.Read
			if tool == api.ToolSearch {
				ts = bd.Search
			}
			orig, actual, avg := ts.TotalTokensOriginal, ts.TotalTokensActual, ts.AvgResponseTimeMs
			pct := percentOf(ts.TotalTokensPrevented, orig)
			row.TokensOriginal, row.TokensActual, row.SavingsPercentage, row.AvgResponseTimeMs = &orig, &actual, &pct, &avg
		}
		r.ByTool = append(r.ByTool, row)
	}
	r.ByMode = []reportMode{}
	for _, mode := range modeOrder(s.BreakdownByMode) {
		sv := s.BreakdownByMode[mode]
		row := reportMode{Mode: mode, Operations: sv.Operations, TokensPrevented: sv.TokensPrevented, CostSaved: sv.CostSaved}
		if bd != nil {
			row.AvgResponseTimeMs = modeMean(bd, mode)
		}
		r.ByMode = append(r.ByMode, row)
	}
	if sp := d.spend; sp != nil && len(sp.ByModel) > 0 {
		rs := &reportSpend{CostSpent: sp.CostSpentUSD, CostSaved: sp.CostSavedUSD,
			SavingsSharePercentage: sp.SavingsSharePercentage, Tokens: sp.Tokens}
		for model, m := range sp.ByModel {
			rs.ByModel = append(rs.ByModel, reportModelSpend{Model: model, CostUSD: m.CostUSD, SpendTokens: m.SpendTokens})
		}
		slices.SortFunc(rs.ByModel, func(a, b reportModelSpend) int {
			return cmp.Or(cmp.Compare(b.CostUSD, a.CostUSD), cmp.Compare(a.Model, b.Model))
		})
		r.Spend = rs
	}
	return r
}

// modeOrder lists the modes of m: the contract's in its order, then any
// other sorted.
func modeOrder(m map[string]api.Savings) []string {
	var out, other []string
	for _, mode := range api.OperationModes {
		if _, ok := m[mode]; ok {
			out = append(out, mode)
		}
	}
	for mode := range m {
		if !api.ValidOperationMode(mode) {
			other = append(other, mode)
		}
	}
	slices.Sort(other)
	return append(out, other...)
}

// modeMean is the mean response time of a mode over both tools: the
// mean the service answers when one tool has the mode (the usual case).
func modeMean(bd *api.ToolBreakdown, mode string) *float64 {
	var found []api.ModeBreakdown
	for _, ts := range []api.ToolStats{bd.Read, bd.Search} {
		if m, ok := ts.ByMode[mode]; ok && m.Count > 0 {
			found = append(found, m)
		}
	}
	switch len(found) {
	case 0:
		return nil
	case 1:
		v := found[0].AvgResponseTimeMs
		return &v
	}
	var sum float64
	var n int64
	for _, m := range found {
		sum += m.AvgResponseTimeMs * float64(m.Count)
		n += m.Count
	}
	v := math.Round(sum/float64(n)*1e9) / 1e9
	return &v
}

// percentOf is part/whole*100 to two decimals, 0 when whole is 0, as the
// service computes savings_percentage.
func percentOf(part, whole int64) float64 {
	if whole == 0 {
		return 0
	}
	return math.Round(float64(part)/float64(whole)*100*100) / 100
}

var reportFormats = map[string]func(report) ([]byte, error){
	"table":    func(r report) ([]byte, error) { return renderText(r, false), nil },
	"markdown": func(r report) ([]byte, error) { return renderText(r, true), nil },
	"json": func(r report) ([]byte, error) {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		err := enc.Encode(r)
		return b.Bytes(), err
	},
}

// renderText renders the report as terminal tables or as Markdown.
func renderText(r report, md bool) []byte {
	var b bytes.Buffer
	title := "last " + r.TimeRange
	if r.rng.Duration == 0 {
		title = "all time"
	}
	tools := "all tools"
	if r.ToolID != nil {
		tools = "tool_id " + strconv.Quote(*r.ToolID)
	}
	heading := func(s string) {
		if md {
			fmt.Fprintf(&b, "\n## %s\n\n", s)
		} else {
			fmt.Fprintf(&b, "\n%s\n", s)
		}
	}
	if md {
		fmt.Fprintf(&b, "# Savings report: %s, %s\n\n", title, tools)
	} else {
		fmt.Fprintf(&b, "Savings report: %s, %s\n", title, tools)
	}
	if r.WindowStart != nil {
		fmt.Fprintf(&b, "%s to %s\n", *r.WindowStart, r.CalculatedAt)
	} else {
		fmt.Fprintf(&b, "up to %s\n", r.CalculatedAt)
	}

	t := r.Totals
	heading("Totals")
	writeTable(&b, md, []string{"figure", "value"}, "lr", [][]string{
		{"operations", thousands(t.Operations)},
		{"tokens original", thousands(t.TokensOriginal)},
		{"tokens actual", optInt(t.TokensActual)},
		{"tokens prevented", thousands(t.TokensPrevented)},
		{"cost baseline", money(t.CostBaseline)},
		{"cost actual", money(t.CostActual)},
		{"cost saved", money(t.CostSaved)},
		{"savings", pct(t.SavingsPercentage)},
	}, false)

	heading("By tool")
	var rows [][]string
	for _, row := range r.ByTool {
		rows = append(rows, []string{row.Tool, thousands(row.Operations), optInt(row.TokensOriginal), optInt(row.TokensActual),
			thousands(row.TokensPrevented), money(row.CostSaved), optPct(row.SavingsPercentage), optMs(row.AvgResponseTimeMs)})
	}
	writeTable(&b, md, []string{"tool", "operations", "tokens original", "tokens actual", "tokens prevented", "cost saved", "savings", "avg ms"},
		"lrrrrrrr", rows, true)

	heading("By mode")
	rows = nil
	for _, row := range r.ByMode {
		rows = append(rows, []string{row.Mode, thousands(row.Operations), thousands(row.TokensPrevented), money(row.CostSaved), optMs(row.AvgResponseTimeMs)})
	}
	if len(rows) == 0 {
		rows = [][]string{{"(none)", "0", "0", money(0), "n/a"}}
	}
	writeTable(&b, md, []string{"mode", "operations", "tokens prevented", "cost saved", "avg ms"}, "lrrrr", rows, true)

	if sp := r.Spend; sp != nil {
		heading("Spend beside savings")
		writeTable(&b, md, []string{"figure", "value"}, "lr", [][]string{
			{"cost spent (as the tools report it)", money(sp.CostSpent)},
			{"cost saved", money(sp.CostSaved)},
			{"savings share of spent plus saved", pct(sp.SavingsSharePercentage)},
			{"tokens input", thousands(sp.Tokens.Input)},
			{"tokens output", thousands(sp.Tokens.Output)},
			{"tokens cache read", thousands(sp.Tokens.CacheRead)},
			{"tokens cache creation", thousands(sp.Tokens.CacheCreation)},
		}, false)
		rows = nil
		for _, m := range sp.ByModel {
			rows = append(rows, []string{m.Model, money(m.CostUSD), thousands(m.Input), thousands(m.Output),
				thousands(m.CacheRead), thousands(m.CacheCreation)})
		}
		writeTable(&b, md, []string{"model", "cost", "input", "output", "cache read", "cache creation"}, "lrrrrr", rows, true)
	}

	heading("Trend of tokens prevented, " + r.Trend.Step)
	line, caption := sparkline(r.Trend.Points, r.step)
	switch {
	case md && line != "":
		fmt.Fprintf(&b, "`%s`\n\n%s\n", line, caption)
	case line != "":
		fmt.Fprintf(&b, "  %s\n  %s\n", line, caption)
	case md:
		fmt.Fprintf(&b, "%s\n", caption)
	default:
		fmt.Fprintf(&b, "  %s\n", caption)
	}
	return b.Bytes()
}

// writeTable writes rows under header, aligned by align ('l' or 'r' per
// column): as Markdown, or as indented columns (with the header when
// showHeader).
func writeTable(b *bytes.Buffer, md bool, header []string, align string, rows [][]string, showHeader bool) {
	if md {
		b.WriteString("| " + strings.Join(header, " | ") + " |\n|")
		for i := range header {
			if align[i] == 'r' {
				b.WriteString("---:|")
			} else {
				b.WriteString("---|")
			}
		}
		b.WriteByte('\n')
		for _, row := range rows {
			b.WriteString("| " + strings.Join(row, " | ") + " |\n")
		}
		return
	}
	width := make([]int, len(header))
	all := rows
	if showHeader {
		all = append([][]string{header}, rows...)
	}
	for _, row := range all {
		for i, c := range row {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	for _, row := range all {
		var line strings.Builder
		line.WriteString(" ")
		for i, c := range row {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			line.WriteString(" ")
			if i > 0 {
				line.WriteString(" ")
			}
			if align[i] == 'r' {
				line.WriteString(pad + c)
			} else {
				line.WriteString(c + pad)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
}

// sparkBars are the levels of a sparkline, lowest first.
var sparkBars = []rune("▁▂▃▄▅▆▇█")

// maxSparkWidth bounds the sparkline: longer trends are drawn with several
// buckets per character.
const maxSparkWidth = 60

// sparkline draws the tokens prevented of points, and a caption of its
// span and peak.
func sparkline(points []api.TrendPoint, step tsdb.Step) (line, caption string) {
	if len(points) == 0 {
		return "", "no operations"
	}
	per := (len(points) + maxSparkWidth - 1) / maxSparkWidth
	var vals []int64
	for i := 0; i < len(points); i += per {
		var sum int64
		for _, p := range points[i:min(i+per, len(points))] {
			sum += p.TokensPrevented
		}
		vals = append(vals, sum)
	}
	lo, hi := min(slices.Min(vals), 0), slices.Max(vals)
	var sb strings.Builder
	for _, v := range vals {
		level := 0
		if hi > lo {
			level = int(math.Round(float64(v-lo) / float64(hi-lo) * float64(len(sparkBars)-1)))
		}
		sb.WriteRune(sparkBars[level])
	}
	peak := points[0]
	for _, p := range points[1:] {
		if p.TokensPrevented > peak.TokensPrevented {
			peak = p
		}
	}
	unit := "hour"
	if step == tsdb.Daily {
		unit = "day"
	}
	span := fmt.Sprintf("%d %ss from %s to %s", len(points), unit, api.FormatTime(points[0].Timestamp), api.FormatTime(points[len(points)-1].Timestamp))
	if per > 1 {
		span += fmt.Sprintf(" (starts), %d per mark", per)
	} else {
		span += " (starts)"
	}
	return sb.String(), fmt.Sprintf("%s; peak %s tokens in the %s from %s", span, thousands(peak.TokensPrevented), unit, api.FormatTime(peak.Timestamp))
}

// money formats US dollars with every decimal the service answers (at
// least two), never rounded to cents.
func money(v float64) string {
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	s := strconv.FormatFloat(v, 'f', -1, 64)
	whole, frac, _ := strings.Cut(s, ".")
	for len(frac) < 2 {
		frac += "0"
	}
	n, err := strconv.ParseInt(whole, 10, 64)
	if err == nil {
		whole = thousands(n)
	}
	return sign + "$" + whole + "." + frac
}

func pct(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) + " %" }

func optPct(v *float64) string {
	if v == nil {
		return "n/a"
	}
	return pct(*v)
}

func optInt(v *int64) string {
	if v == nil {
		return "n/a"
	}
	return thousands(*v)
}

func optMs(v *float64) string {
	if v == nil {
		return "n/a"
	}
	return strconv.FormatFloat(*v, 'f', 2, 64)
}
