package handlers

import (
	"net/http"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/exporter"
)

// reportRoutes serve the aggregate endpoints.
type reportRoutes struct{ svc Reports }

// timeRange reads time_range (exporter.DefaultRange when absent) among
// allowed; anything else is a 400 naming the allowed values.
func timeRange(r *http.Request, allowed []exporter.TimeRange) (exporter.TimeRange, error) {
	name := r.URL.Query().Get("time_range")
	if name == "" {
		return exporter.DefaultRange, nil
	}
	tr, ok := exporter.ParseTimeRange(name, allowed)
	if !ok {
		return tr, badRequest("Invalid time_range: must be one of " + exporter.RangeNames(allowed))
	}
	return tr, nil
}

// toolBreakdown serves GET /metrics/tool-breakdown.
func (h reportRoutes) toolBreakdown(_ http.ResponseWriter, r *http.Request) (any, error) {
	tr, err := timeRange(r, exporter.BreakdownRanges)
	if err != nil {
		return nil, err
	}
	return h.svc.ToolBreakdown(r.Context(), tr, r.URL.Query().Get("tool_id"))
}

// apiSavings serves GET /metrics/api-savings; with compare=previous (a
// bounded time_range only) it adds the previous period and the change from
// it.
func (h reportRoutes) apiSavings(_ http.ResponseWriter, r *http.Request) (any, error) {
	tr, err := timeRange(r, exporter.SavingsRanges)
	if err != nil {
		return nil, err
	}
	savings := h.svc.APISavings
	switch r.URL.Query().Get("compare") {
	case "":
	case api.ComparePrevious:
		savings = h.svc.CompareAPISavings // over "all": exporter.ErrUnboundedRange
	default:
		return nil, badRequest("Invalid compare: must be " + api.ComparePrevious)
	}
	return savings(r.Context(), tr, r.URL.Query().Get("tool_id"))
}

// spend serves GET /metrics/spend: what the tools reported spending beside
// what they saved, over the api-savings ranges.
func (h reportRoutes) spend(_ http.ResponseWriter, r *http.Request) (any, error) {
	tr, err := timeRange(r, exporter.SavingsRanges)
	if err != nil {
		return nil, err
	}
	return h.svc.Spend(r.Context(), tr, r.URL.Query().Get("tool_id"))
}
