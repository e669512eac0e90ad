// Package grafana builds OmniMemory's Grafana dashboards as code, with
// github.com/grafana/grafana-foundation-sdk/go, and renders them to the JSON
// files committed under grafana/dashboards, which Grafana provisions from
// grafana/provisioning.
//
// Three dashboards: token savings and spend (Prometheus), operations and spend (InfluxDB, Flux)
// and service health (Prometheus). Every panel is one function; shared
// defaults and query helpers live in panels.go and queries.go.
//
// The JSON files are golden files: `go test ./grafana/...` regenerates the
// dashboards in memory and fails when a committed file differs, and
// `go test ./grafana/... -update` (or `go generate ./grafana/...`) rewrites
// them.
//
// The dashboards are the classic JSON model (the SDK's dashboard package),
// which the SDK marks deprecated in favour of dashboardv2. The v2 schema
// needs Grafana 12's experimental dashboard feature toggles; the classic
// model is what the Grafana of docker-compose.yml (12.0), and every older
// one, loads from provisioned files, so it stays.
//
//lint:file-ignore SA1019 the classic dashboard model is what file provisioning reads (package doc)
package grafana

//go:generate go test -run TestGolden -update .

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
)

// Data source defaults. The dashboards reach their data sources only
// through the datasource variables DS_PROMETHEUS and DS_INFLUXDB, whose
// default values are these uids: the uids that
// grafana/provisioning/datasources/datasources.yml gives its data sources.
const (
	PrometheusUID = "prometheus"
	InfluxDBUID   = "influxdb"

	PrometheusVariable = "DS_PROMETHEUS"
	InfluxDBVariable   = "DS_INFLUXDB"

	// DefaultBucket is the default of the operations dashboard's bucket
	// variable: the service's default INFLUXDB_BUCKET on InfluxDB 2.x. On
	// 1.8 the bucket is "database/retention-policy".
	DefaultBucket = "omnimemory"
)

// Generated is one dashboard and the name of its file in grafana/dashboards.
type Generated struct {
	File      string
	Dashboard dashboard.Dashboard
}

// All builds every dashboard, with panel ids and query refIds assigned.
func All() ([]Generated, error) {
	specs := []struct {
		file  string
		build func() *dashboard.DashboardBuilder
	}{
		{"omnimemory-token-savings.json", TokenSavings},
		{"omnimemory-operations-influxdb.json", OperationsInfluxDB},
		{"omnimemory-service-health.json", ServiceHealth},
	}
	out := make([]Generated, 0, len(specs))
	for _, s := range specs {
		d, err := s.build().Build()
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", s.file, err)
		}
		finalize(&d)
		out = append(out, Generated{File: s.file, Dashboard: d})
	}
	return out, nil
}

// Marshal renders a dashboard the way the committed files are written: two
// spaces of indent, a final newline, and no HTML escaping, so that Flux's
// `|>` and PromQL's `<` stay readable.
func Marshal(d dashboard.Dashboard) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// finalize numbers the panels (rows included) in the order they appear and
// gives every query without a refId the next letter, as Grafana would when
// the dashboard is saved, so that the files are stable.
func finalize(d *dashboard.Dashboard) {
	var id uint32
	panel := func(p *dashboard.Panel) {
		id++
		p.Id = cog.ToPtr(id)
		for i, t := range p.Targets {
			ref := string(rune('A' + i))
			switch q := t.(type) {
			case prometheus.Dataquery:
				if q.RefId == nil {
					q.RefId = cog.ToPtr(ref)
				}
				p.Targets[i] = q
			case FluxQuery:
				if q.RefId == "" {
					q.RefId = ref
				}
				p.Targets[i] = q
			}
		}
	}
	for i := range d.Panels {
		switch {
		case d.Panels[i].Panel != nil:
			panel(d.Panels[i].Panel)
		case d.Panels[i].RowPanel != nil:
			row := d.Panels[i].RowPanel
			id++
			row.Id = id
			for j := range row.Panels {
				panel(&row.Panels[j])
			}
		}
	}
}
