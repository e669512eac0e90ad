package grafana

import (
	"bytes"
	"encoding/json"
	"errors"
	"sync"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
)

// InfluxDBType is the plugin id of Grafana's InfluxDB data source, which runs
// Flux when the data source is configured with the Flux query language.
const InfluxDBType = "influxdb"

// FluxQuery is one Flux target of Grafana's InfluxDB data source. The
// foundation SDK (v0.0.22) ships no InfluxDB query package, so this is the
// small variant it lets us define: the fields Grafana itself saves for a
// Flux query, and nothing more.
type FluxQuery struct {
	Datasource *common.DataSourceRef `json:"datasource,omitempty"`
	RefId      string                `json:"refId"`
	Hide       *bool                 `json:"hide,omitempty"`
	// Query is the Flux text. Grafana replaces v.timeRangeStart,
	// v.timeRangeStop and v.windowPeriod textually before sending it, and
	// dashboard variables (${bucket}, ${tool_id:json}) before that.
	Query string `json:"query"`
}

var _ variants.Dataquery = FluxQuery{}

// ImplementsDataqueryVariant marks FluxQuery as a dataquery for the SDK.
func (FluxQuery) ImplementsDataqueryVariant() {}

// DataqueryType answers the data source plugin id the query belongs to.
func (FluxQuery) DataqueryType() string { return InfluxDBType }

// Validate checks the query; a Flux target without text is a mistake.
func (q FluxQuery) Validate() error {
	if q.Query == "" {
		return cog.MakeBuildErrors("query", errEmptyQuery)
	}
	return nil
}

var errEmptyQuery = errors.New("empty Flux query")

// Equals reports whether other is the same Flux query, whether it is held
// by value (as built) or by pointer (as unmarshalled).
func (q FluxQuery) Equals(other variants.Dataquery) bool {
	var o FluxQuery
	switch t := other.(type) {
	case FluxQuery:
		o = t
	case *FluxQuery:
		if t == nil {
			return false
		}
		o = *t
	default:
		return false
	}
	if q.RefId != o.RefId || q.Query != o.Query {
		return false
	}
	if (q.Hide == nil) != (o.Hide == nil) || (q.Hide != nil && *q.Hide != *o.Hide) {
		return false
	}
	if (q.Datasource == nil) != (o.Datasource == nil) {
		return false
	}
	return q.Datasource == nil || q.Datasource.Equals(*o.Datasource)
}

// FluxVariantConfig tells the SDK's runtime how to unmarshal Flux targets
// (panels whose datasource type is "influxdb"). Both unmarshalers are set:
// the runtime calls the strict one from its strict paths, and a nil function
// there would panic.
func FluxVariantConfig() variants.DataqueryConfig {
	return variants.DataqueryConfig{
		Identifier: InfluxDBType,
		DataqueryUnmarshaler: func(raw []byte) (variants.Dataquery, error) {
			q := &FluxQuery{}
			if err := json.Unmarshal(raw, q); err != nil {
				return nil, err
			}
			return q, nil
		},
		StrictDataqueryUnmarshaler: func(raw []byte) (variants.Dataquery, error) {
			q := &FluxQuery{}
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(q); err != nil {
				return nil, err
			}
			return q, nil
		},
	}
}

var registerOnce sync.Once

// Register registers the SDK's panel and query variants and FluxQuery with
// the SDK's runtime, so that json.Unmarshal into dashboard.Dashboard decodes
// panel options and targets into their types. It is safe to call often.
func Register() {
	registerOnce.Do(func() {
		plugins.RegisterDefaultPlugins()
		cog.NewRuntime().RegisterDataqueryVariant(FluxVariantConfig())
	})
}

// FluxQueryBuilder builds a FluxQuery.
type FluxQueryBuilder struct {
	internal FluxQuery
}

var _ cog.Builder[variants.Dataquery] = (*FluxQueryBuilder)(nil)

// NewFluxQueryBuilder starts a Flux target with the given text.
func NewFluxQueryBuilder(query string) *FluxQueryBuilder {
	return &FluxQueryBuilder{internal: FluxQuery{Query: query}}
}

// Build answers the query. Its error is a cog.BuildErrors, as the SDK's panel
// builders assume of every target builder.
func (b *FluxQueryBuilder) Build() (variants.Dataquery, error) {
	if err := b.internal.Validate(); err != nil {
		return FluxQuery{}, err
	}
	return b.internal, nil
}

// Datasource sets the data source the query runs on.
func (b *FluxQueryBuilder) Datasource(ref common.DataSourceRef) *FluxQueryBuilder {
	b.internal.Datasource = &ref
	return b
}

// RefId sets the query's reference id (A, B, ...).
func (b *FluxQueryBuilder) RefId(refID string) *FluxQueryBuilder {
	b.internal.RefId = refID
	return b
}

// Hide hides the query's result from the panel.
func (b *FluxQueryBuilder) Hide(hide bool) *FluxQueryBuilder {
	b.internal.Hide = &hide
	return b
}
