//lint:file-ignore SA1019 the classic dashboard model is what file provisioning reads (package doc)
package grafana

import (
	"github.com/grafana/grafana-foundation-sdk/go/bargauge"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Shared defaults: every dashboard, variable and panel starts from these.

// Panel sizes on Grafana's 24-column grid.
const (
	statHeight  = 4
	statWidth   = 6
	graphHeight = 8
	graphWidth  = 12
	tableHeight = 10
)

// Grafana unit ids used by the panels.
const (
	unitShort   = "short"
	unitUSD     = "currencyUSD"
	unitPercent = "percentunit"
	unitSeconds = "s"
	unitMillis  = "ms"
	unitBytes   = "bytes"
	unitReqps   = "reqps"
	unitOps     = "ops"
)

// prometheusDS is the data source of every Prometheus panel and query: the
// DS_PROMETHEUS variable, never a fixed uid.
func prometheusDS() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${" + PrometheusVariable + "}")}
}

// influxDS is the data source of every Flux panel and query.
func influxDS() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr(InfluxDBType), Uid: cog.ToPtr("${" + InfluxDBVariable + "}")}
}

// newDashboard starts a dashboard with the shared settings: tagged
// "omnimemory", linked to its siblings, shared crosshair, auto refresh.
func newDashboard(uid, title, description, from string) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(description).
		Tags([]string{"omnimemory"}).
		Editable().
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Time(from, "now").
		Refresh("1m").
		Timezone("browser").
		Link(dashboard.NewDashboardLinkBuilder("OmniMemory").
			Type(dashboard.DashboardLinkTypeDashboards).
			Tags([]string{"omnimemory"}).
			AsDropdown(true).
			IncludeVars(true).
			KeepTime(true))
}

// row starts a new (expanded) row: the panels added after it belong to it.
func row(title string) *dashboard.RowBuilder {
	return dashboard.NewRowBuilder(title)
}

// datasourceVariable lets the viewer pick a data source of pluginType;
// it defaults to the provisioned one (uid).
func datasourceVariable(name, label, pluginType, uid, text string) *dashboard.DatasourceVariableBuilder {
	return dashboard.NewDatasourceVariableBuilder(name).
		Label(label).
		Type(pluginType).
		Current(option(text, uid))
}

// option is a variable's single selected value.
func option(text, value string) dashboard.VariableOption {
	return dashboard.VariableOption{
		Selected: cog.ToPtr(true),
		Text:     dashboard.StringOrArrayOfString{String: cog.ToPtr(text)},
		Value:    dashboard.StringOrArrayOfString{String: cog.ToPtr(value)},
	}
}

// allOption is a multi-value variable's "All" selection.
func allOption() dashboard.VariableOption {
	return dashboard.VariableOption{
		Selected: cog.ToPtr(true),
		Text:     dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}},
		Value:    dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}},
	}
}

// multiQueryVariable is a query variable with several values and "All",
// refreshed with the time range and sorted.
func multiQueryVariable(name, label, description string, ds common.DataSourceRef, query string) *dashboard.QueryVariableBuilder {
	return dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Description(description).
		Datasource(ds).
		Query(dashboard.StringOrMap{String: cog.ToPtr(query)}).
		Definition(query).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalCaseInsensitiveAsc).
		Multi(true).
		IncludeAll(true).
		Current(allOption())
}

// timeseriesPanel is a graph with the shared look: thin lines with a light
// fill, no points, a legend table with mean and max, a tooltip with every
// series sorted by value.
func timeseriesPanel(ds common.DataSourceRef, title, description, unit string) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(ds).
		Unit(unit).
		Height(graphHeight).
		Span(graphWidth).
		LineWidth(1).
		FillOpacity(10).
		ShowPoints(common.VisibilityModeNever).
		SpanNulls(common.BoolOrFloat64{Bool: cog.ToPtr(false)}).
		Legend(common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeTable).
			Placement(common.LegendPlacementBottom).
			ShowLegend(true).
			Calcs([]string{"mean", "max", "lastNotNull"})).
		Tooltip(common.NewVizTooltipOptionsBuilder().
			Mode(common.TooltipDisplayModeMulti).
			Sort(common.SortOrderDescending))
}

// statPanel is a single big number, reduced from the last value of its
// (instant) query, with a sparkline-free background.
func statPanel(ds common.DataSourceRef, title, description, unit string) *stat.PanelBuilder {
	return stat.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(ds).
		Unit(unit).
		Height(statHeight).
		Span(statWidth).
		Orientation(common.VizOrientationAuto).
		GraphMode(common.BigValueGraphModeNone).
		ColorMode(common.BigValueColorModeValue).
		ReduceOptions(common.NewReduceDataOptionsBuilder().
			Calcs([]string{"lastNotNull"}).
			Values(false)).
		Thresholds(thresholds("blue"))
}

// barGaugePanel ranks the series of an instant query as horizontal bars.
func barGaugePanel(ds common.DataSourceRef, title, description, unit string) *bargauge.PanelBuilder {
	return bargauge.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(ds).
		Unit(unit).
		Height(graphHeight).
		Span(graphWidth).
		Orientation(common.VizOrientationHorizontal).
		DisplayMode(common.BarGaugeDisplayModeGradient).
		ReduceOptions(common.NewReduceDataOptionsBuilder().
			Calcs([]string{"lastNotNull"}).
			Values(false)).
		Thresholds(thresholds("green"))
}

// tablePanel shows a query's rows as they come, full width.
func tablePanel(ds common.DataSourceRef, title, description string) *table.PanelBuilder {
	return table.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(ds).
		Height(tableHeight).
		Span(graphWidth).
		ShowHeader(true).
		Footer(common.NewTableFooterOptionsBuilder().
			Show(false).
			Reducer([]string{}))
}

// thresholds is a single base colour: the panels here show amounts, not
// states, except where a panel sets its own.
func thresholds(color string) *dashboard.ThresholdsConfigBuilder {
	return dashboard.NewThresholdsConfigBuilder().
		Mode(dashboard.ThresholdsModeAbsolute).
		Steps([]dashboard.Threshold{{Value: nil, Color: color}})
}

// column renames a table column and sets its unit.
func column(displayName, unit string) []dashboard.DynamicConfigValue {
	props := []dashboard.DynamicConfigValue{{Id: "displayName", Value: displayName}}
	if unit != "" {
		props = append(props, dashboard.DynamicConfigValue{Id: "unit", Value: unit})
	}
	return props
}
