package grafana

import (
	"fmt"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/prometheus"

	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/schema"
)

// PromQL helpers. Rates always use $__rate_interval, which Grafana keeps at
// least four scrape intervals wide; totals over the dashboard's range use
// $__range in instant queries.

// promRange is a range query (graphs).
func promRange(expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().
		Datasource(prometheusDS()).
		EditorMode(prometheus.QueryEditorModeCode).
		Expr(expr).
		LegendFormat(legend).
		Range()
}

// promInstant is an instant query at the end of the range (stats, bars).
func promInstant(expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().
		Datasource(prometheusDS()).
		EditorMode(prometheus.QueryEditorModeCode).
		Expr(expr).
		LegendFormat(legend).
		Instant()
}

// promTable is an instant query answered as a table (one row per series,
// its labels as columns and its value as "Value #<refId>"), for table
// panels that merge several queries.
func promTable(expr string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().
		Datasource(prometheusDS()).
		EditorMode(prometheus.QueryEditorModeCode).
		Expr(expr).
		Format(prometheus.PromQueryFormatTable).
		Instant()
}

// rate is the per-second rate of a counter over $__rate_interval.
func rate(metric, selector string) string {
	return fmt.Sprintf("rate(%s%s[$__rate_interval])", metric, selector)
}

// increase is a counter's increase over the dashboard's whole range.
func increase(metric, selector string) string {
	return fmt.Sprintf("increase(%s%s[$__range])", metric, selector)
}

// sumBy sums expr by the given labels (by nothing: one series).
func sumBy(expr string, labels ...string) string {
	if len(labels) == 0 {
		return "sum(" + expr + ")"
	}
	return fmt.Sprintf("sum by (%s) (%s)", strings.Join(labels, ", "), expr)
}

// quantile estimates the q-quantile of a classic histogram from the rate of
// its _bucket series, kept apart by the given labels.
func quantile(q float64, histogram, selector string, labels ...string) string {
	by := append([]string{"le"}, labels...)
	return fmt.Sprintf("histogram_quantile(%g, %s)", q, sumBy(rate(histogram+"_bucket", selector), by...))
}

// ratio divides two expressions; PromQL matches their series by labels.
func ratio(numerator, denominator string) string {
	return fmt.Sprintf("%s / %s", numerator, denominator)
}

// price is the configured USD price per token: the service exports it per
// 1,000 tokens (every replica the same), so PromQL can turn tokens into
// dollars.
const price = "scalar(max(omnimemory_cost_per_1k_tokens_usd)) / 1000"

// dollars turns an expression counting tokens into US dollars.
func dollars(tokens string) string {
	return fmt.Sprintf("%s * %s", tokens, price)
}

// Flux helpers. Every query reads the bucket from the ${bucket} variable and
// the time range from Grafana's v.timeRangeStart / v.timeRangeStop, and sticks
// to Flux 0.65 (InfluxDB 1.8) functions, which 2.x runs unchanged: from,
// range, filter, contains, group, aggregateWindow, pivot, reduce, map, top,
// sort, keep, rename, count, sum, mean.

// fluxOperations starts a query on the operations measurement, keeping
// only the given fields and the clients selected in ${tool_id}.
func fluxOperations(fields ...string) string {
	return fluxFrom(fluxFields(schema.Operation, fields...))
}

// fluxSpend starts a query on the spend measurement (what the tools report
// spending), keeping only the given fields and the clients selected.
func fluxSpend(fields ...string) string {
	return fluxFrom(fluxFields(schema.Spend, fields...))
}

// fluxFields is the predicate of the points of measurement with one of the
// given fields.
func fluxFields(measurement string, fields ...string) string {
	conds := make([]string, len(fields))
	for i, f := range fields {
		conds[i] = fmt.Sprintf("r._field == %q", f)
	}
	fieldFilter := strings.Join(conds, " or ")
	if len(fields) > 1 {
		fieldFilter = "(" + fieldFilter + ")"
	}
	return `r._measurement == "` + measurement + `" and ` + fieldFilter
}

// fluxFrom starts a query on the points that match any of the predicates,
// in the bucket and time range, of the clients selected in ${tool_id}.
func fluxFrom(preds ...string) string {
	pred := preds[0]
	if len(preds) > 1 {
		pred = "(" + strings.Join(preds, ") or (") + ")"
	}
	return `from(bucket: "${bucket}")
  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
  |> filter(fn: (r) => ` + pred + `)
  |> filter(fn: (r) => contains(value: r.` + schema.TagToolID + `, set: ${tool_id:json}))`
}

// pipe appends Flux pipeline steps, one per line.
func pipe(query string, steps ...string) string {
	var b strings.Builder
	b.WriteString(query)
	for _, s := range steps {
		b.WriteString("\n  |> ")
		b.WriteString(s)
	}
	return b.String()
}

// fluxQuery is a Flux target on the DS_INFLUXDB data source.
func fluxQuery(query string) *FluxQueryBuilder {
	return NewFluxQueryBuilder(query).Datasource(influxDS())
}
