package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// The targets of issue "Performance", point 3.
const (
	targetSingleOps   = 10_000  // single operations/s on the embedded store and PostgreSQL
	targetSingleShare = 50      // % of the bare handler's rate
	targetBatchOps    = 100_000 // batch operations/s on the embedded store and PostgreSQL
	targetBatchShare  = 80      // % of InfluxDB's own line-protocol rate
	targetQueryP95Ms  = 50      // every aggregate's p95
	// targetAggregateP95Ms is the custom aggregation by file path's p95
	// (issue "The specification's future list").
	targetAggregateP95Ms = 500
	// targetStreamP99Ms: a stream event within a second of its 200.
	targetStreamP99Ms   = 1000
	targetQueryAtOps    = 2_000_000
	targetRSSMB         = 150
	kbPerMB             = 1024
	resultReference     = "reference"
	resultInformational = "—"
)

// row is one line of the result table.
type row struct {
	Phase     string  `json:"phase"`
	Store     string  `json:"store"`
	Figure    string  `json:"figure"`
	Value     string  `json:"value"`
	Reference string  `json:"reference"`
	Target    string  `json:"target"`
	Result    string  `json:"result"`
	Checks    []check `json:"checks,omitempty"`
}

// check is one target checked against one figure.
type check struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Target float64 `json:"target"`
	AtMost bool    `json:"at_most"` // the target is a ceiling, not a floor
	Points bool    `json:"points"`  // value and target are percentages: margins in points
	Met    bool    `json:"met"`
}

func newCheck(name string, value, target float64, atMost, points bool) check {
	c := check{Name: name, Value: value, Target: target, AtMost: atMost, Points: points}
	if atMost {
		c.Met = value <= target
	} else {
		c.Met = value >= target
	}
	return c
}

// String says met or missed and by how much: the figure relative to its
// target (+23 % above a floor, 96 % under a ceiling), or in percentage
// points for shares.
func (c check) String() string {
	verdict := "missed"
	if c.Met {
		verdict = "met"
	}
	var margin string
	switch {
	case c.Points:
		margin = signed(c.Value-c.Target, 1) + " pts"
	case c.Target == 0 && c.Value == 0:
		margin = "none"
	case c.Target == 0:
		margin = strconv.FormatFloat(c.Value, 'f', -1, 64)
	case c.AtMost && c.Met:
		margin = strconv.FormatFloat((1-c.Value/c.Target)*100, 'f', 0, 64) + " % under"
	case c.AtMost && c.Value < 2*c.Target:
		margin = "+" + strconv.FormatFloat((c.Value/c.Target-1)*100, 'f', 0, 64) + " % over"
	case c.AtMost:
		margin = strconv.FormatFloat(c.Value/c.Target, 'f', 1, 64) + "× the ceiling"
	default:
		margin = signed((c.Value/c.Target-1)*100, 0) + " %"
	}
	return verdict + " (" + margin + ")"
}

func signed(v float64, prec int) string {
	s := strconv.FormatFloat(v, 'f', prec, 64)
	if v >= 0 {
		return "+" + s
	}
	return strings.Replace(s, "-", "−", 1)
}

func pct(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) + " %" }

func share(v, of float64) float64 {
	if of <= 0 {
		return 0
	}
	return v / of * 100
}

// ingestValue formats an ingest phase: rate, latencies, and what was odd.
func ingestValue(r *ingestResult, latencies bool) string {
	v := fmtRate(r.OpsPerSec)
	if latencies {
		v += " · p50 " + fmtMs(r.Latency.P50Ms) + " · p99 " + fmtMs(r.Latency.P99Ms)
	}
	v += " (" + thousands(r.Operations) + " ops in " + strconv.FormatFloat(r.Seconds, 'f', 1, 64) + " s"
	if r.Errors > 0 {
		v += ", " + thousands(r.Errors) + " failed requests"
	}
	if r.Stopped == "errors" || r.Stopped == "interrupted" {
		v += ", stopped by " + r.Stopped
	}
	return v + ")"
}

// buildRows turns the measurements into table rows with their targets.
func buildRows(res *benchResults) []row {
	var rows []row
	add := func(r row) {
		var parts []string
		for _, c := range r.Checks {
			parts = append(parts, c.String())
		}
		if len(parts) > 0 {
			r.Result = strings.Join(parts, "; ")
		}
		if r.Result == "" {
			r.Result = resultInformational
		}
		rows = append(rows, r)
	}
	cfg := res.Config
	singleFig := fmt.Sprintf("single ops, %d conns: ops/s · p50 · p99", cfg.Connections)
	var bareRate float64
	if res.Bare != nil {
		bareRate = res.Bare.OpsPerSec
		add(row{Phase: "a) single-op", Store: "bare net/http", Figure: singleFig, Value: ingestValue(res.Bare, true), Result: resultReference})
	}
	for _, s := range res.Stores {
		if s.Single == nil {
			continue
		}
		r := row{Phase: "a) single-op", Store: storeLabel(s.Store), Figure: singleFig, Value: ingestValue(s.Single, true)}
		sh := share(s.Single.OpsPerSec, bareRate)
		if bareRate > 0 {
			r.Reference = pct(sh) + " of bare"
		}
		if kindOf(s.Store).rateTargets {
			r.Target = "≥ " + thousands(targetSingleOps) + " ops/s; ≥ " + strconv.Itoa(targetSingleShare) + " % of bare"
			r.Checks = append(r.Checks, newCheck("single-op rate", s.Single.OpsPerSec, targetSingleOps, false, false))
			if bareRate > 0 {
				r.Checks = append(r.Checks, newCheck("single-op share of bare", sh, targetSingleShare, false, true))
			}
		}
		add(r)
	}
	batchFig := fmt.Sprintf("batches of %d, %d conns: ops/s", cfg.Batch, cfg.BatchConnections)
	var lpRate float64
	for _, s := range res.Stores {
		if s.BatchReference != nil {
			if s.Store == "influxdb" {
				lpRate = s.BatchReference.OpsPerSec
			}
			add(row{Phase: "b) batch", Store: kindOf(s.Store).reference, Figure: batchFig, Value: ingestValue(s.BatchReference, false), Result: resultReference})
		}
	}
	for _, s := range res.Stores {
		if s.Batch == nil {
			continue
		}
		kind := kindOf(s.Store)
		r := row{Phase: "b) batch", Store: kind.label, Figure: batchFig, Value: ingestValue(s.Batch, false)}
		var refs []string
		if s.BatchReference != nil && s.Store != "influxdb" { // InfluxDB's own is the line protocol below
			refs = append(refs, pct(share(s.Batch.OpsPerSec, s.BatchReference.OpsPerSec))+" of "+kind.refShort)
		}
		sh := share(s.Batch.OpsPerSec, lpRate)
		if lpRate > 0 {
			refs = append(refs, pct(sh)+" of line protocol")
		}
		r.Reference = strings.Join(refs, "; ")
		if s.Store == "influxdb" && s.DrainSeconds >= 1 {
			r.Value += "; queryable " + strconv.FormatFloat(s.DrainSeconds, 'f', 0, 64) + " s later"
		}
		var targets []string
		if kind.rateTargets {
			targets = append(targets, "≥ "+thousands(targetBatchOps)+" ops/s")
			r.Checks = append(r.Checks, newCheck("batch rate", s.Batch.OpsPerSec, targetBatchOps, false, false))
		}
		if lpRate > 0 && s.Store == "influxdb" { // the target of the InfluxDB store; the others show their share
			targets = append(targets, "≥ "+strconv.Itoa(targetBatchShare)+" % of line protocol")
			r.Checks = append(r.Checks, newCheck("batch share of line protocol", sh, targetBatchShare, false, true))
		}
		r.Target = strings.Join(targets, "; ")
		add(r)
	}
	for _, s := range res.Stores {
		raw := map[string]rawResult{}
		for _, x := range s.Raw {
			raw[x.Range] = x
		}
		for _, q := range s.Queries {
			r := row{Phase: "c) query", Store: storeLabel(s.Store), Figure: q.String() + ": p50 · p95"}
			if q.Latency.Count == 0 {
				if q.TimedOut == q.Errors {
					r.Value = "no answer within " + cfg.QueryTimeout.String() + " (" + strconv.Itoa(q.Errors) + " req timed out)"
				} else {
					r.Value = "no answer (" + strconv.Itoa(q.Errors) + " failed: " + truncate(q.FirstError, 120) + ")"
				}
				target := q.target()
				r.Target = "p95 ≤ " + strconv.FormatFloat(target, 'f', -1, 64) + " ms"
				r.Result = "missed (no answer)"
				r.Checks = []check{{Name: q.String() + " p95", Target: target, AtMost: true}}
				rows = append(rows, r)
				continue
			}
			r.Value = fmtMs(q.Latency.P50Ms) + " · " + fmtMs(q.Latency.P95Ms) + " (" + strconv.Itoa(q.Latency.Count) + " req"
			if q.Latency.MaxMs > 10*q.Latency.P95Ms {
				r.Value += ", the slowest " + fmtMs(q.Latency.MaxMs) // a cold first answer, say
			}
			if q.Capped {
				r.Value += ", capped at " + cfg.QueryBudget.String()
			}
			if q.Errors > 0 {
				r.Value += ", " + strconv.Itoa(q.Errors) + " errors"
			}
			r.Value += ")"
			if x, ok := raw[q.Range]; ok && x.Latency.Count > 0 && q.GroupBy == "" {
				r.Reference = "raw SQL " + fmtMs(x.Latency.P50Ms) + " · " + fmtMs(x.Latency.P95Ms) + ": " + speedup(x.Latency.P50Ms, q.Latency.P50Ms)
			}
			target := q.target()
			r.Target = "p95 ≤ " + strconv.FormatFloat(target, 'f', -1, 64) + " ms"
			r.Checks = append(r.Checks, newCheck(q.String()+" p95", q.Latency.P95Ms, target, true, false))
			add(r)
		}
	}
	for _, s := range res.Stores {
		if s.RSS.MaxKB == 0 {
			continue
		}
		peak := max(s.RSS.MaxKB, s.RSS.HWMKB)
		r := row{Phase: "d) memory", Store: storeLabel(s.Store), Figure: "service VmRSS peak: single · batch · query; VmHWM",
			Value:  fmtMB(s.RSS.SingleKB) + " · " + fmtMB(s.RSS.BatchKB) + " · " + fmtMB(s.RSS.QueryKB) + "; " + fmtMB(s.RSS.HWMKB),
			Target: "≤ " + strconv.Itoa(targetRSSMB) + " MB"}
		r.Checks = append(r.Checks, newCheck("service peak RSS (MB)", float64(peak)/kbPerMB, targetRSSMB, true, false))
		add(r)
		if k := kindOf(s.Store); s.ServerKB > 0 {
			add(row{Phase: "d) memory", Store: k.server, Figure: k.serverFig, Value: fmtMB(s.ServerKB), Result: resultReference})
		}
	}
	for _, s := range res.Stores {
		if s.Stream == nil {
			continue
		}
		st := s.Stream
		r := row{Phase: "e) stream", Store: storeLabel(s.Store),
			Figure: fmt.Sprintf("one SSE subscriber beside single ops (%d conns): from the 200 to the event, p50 · p99 · max", cfg.Connections),
			Value: fmtMs(st.Latency.P50Ms) + " · " + fmtMs(st.Latency.P99Ms) + " · " + fmtMs(st.Latency.MaxMs) +
				" (" + thousands(st.Received) + " of " + thousands(st.Acked) + " acknowledged operations, " + thousands(st.Duplicates) + " twice)",
			Target: "every operation once; p99 ≤ " + strconv.Itoa(targetStreamP99Ms) + " ms"}
		r.Checks = append(r.Checks,
			newCheck("stream operations missing or twice", float64(st.Acked-st.Received+st.Duplicates), 0, true, false),
			newCheck("stream p99 (ms)", st.Latency.P99Ms, targetStreamP99Ms, true, false))
		add(r)
	}
	return rows
}

// speedup formats how many times faster ours is than the reference.
func speedup(reference, ours float64) string {
	if ours <= 0 || reference <= 0 {
		return "n/a"
	}
	x, word := reference/ours, " faster"
	if x < 1 {
		x, word = 1/x, " slower"
	}
	if x >= 10 {
		return strconv.FormatFloat(x, 'f', 0, 64) + "×" + word
	}
	return strconv.FormatFloat(x, 'f', 1, 64) + "×" + word
}

// renderMarkdown writes the header and the table.
func renderMarkdown(w io.Writer, res *benchResults) error {
	var b strings.Builder
	cfg := res.Config
	fmt.Fprintf(&b, "### omnimemory-metrics benchmark, %s\n\n", res.Date.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Machine: %s, %d cores, %.1f GiB memory, %s\n", res.Machine.CPU, res.Machine.Cores, float64(res.Machine.MemoryKB)/(1<<20), res.Machine.OS)
	fmt.Fprintf(&b, "- Go: %s; service: %s; load generator on the same machine\n", res.GoVersion, res.Service)
	if res.Command != "" {
		fmt.Fprintf(&b, "- Command: `%s`\n", strings.TrimSpace(res.Command))
	}
	fmt.Fprintf(&b, "- Sizes: single ops %d connections for %s each; %s operations seeded in batches of %d on %d connections, created_at over the last 30 days %s; %d requests per query range (at most %s each), %d single ops/s written meanwhile; stream phase %s\n",
		cfg.Connections, cfg.Duration, thousands(cfg.Ops), cfg.Batch, cfg.BatchConnections, seedOrder(cfg.Scatter), cfg.Requests, cfg.QueryBudget, cfg.QueryWrites, cfg.StreamDuration)
	if cfg.Ops != targetQueryAtOps {
		fmt.Fprintf(&b, "- Note: the query target is set for %s operations; this run seeded %s\n", thousands(targetQueryAtOps), thousands(cfg.Ops))
	}
	if res.Seconds > 0 {
		fmt.Fprintf(&b, "- Took %s", (time.Duration(res.Seconds) * time.Second).Round(time.Second))
		if res.Machine.LoadBefore != "" {
			fmt.Fprintf(&b, "; 1-minute load average %s before, %s after (%d cores)", res.Machine.LoadBefore, res.Machine.LoadAfter, res.Machine.Cores)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n| phase | store | figure | value | reference | target | result |\n|---|---|---|---|---|---|---|\n")
	for _, r := range res.Rows {
		cells := []string{r.Phase, r.Store, r.Figure, r.Value, dash(r.Reference), dash(r.Target), r.Result}
		for i, c := range cells {
			cells[i] = strings.ReplaceAll(c, "|", `\|`)
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	met, missed := 0, 0
	for _, r := range res.Rows {
		for _, c := range r.Checks {
			if c.Met {
				met++
			} else {
				missed++
			}
		}
	}
	fmt.Fprintf(&b, "\nTargets: %d met, %d missed.\n", met, missed)
	_, err := io.WriteString(w, b.String())
	return err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func dash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// seedOrder says how the batch phase spread created_at.
func seedOrder(scatter bool) string {
	if scatter {
		return "(every batch scattered over all 30 days: --scatter)"
	}
	return "(in time order, oldest first, each batch a 1/n slice, as live traffic and an import send them)"
}
