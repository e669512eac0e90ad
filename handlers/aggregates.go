package handlers

import (
	"net/http"

	"github.com/omnimemory/omnimemory-metrics/exporter"
)

// timeRange reads time_range (default 24h) among allowed; anything else is
// a 400 naming the allowed values.
func timeRange(r *http.Request, allowed []exporter.TimeRange) (exporter.TimeRange, error) {
	name := r.URL.Query().Get("time_range")
	if name == "" {
		name = exporter.Range24h.Name
	}
	tr, ok := exporter.ParseTimeRange(name, allowed)
	if !ok {
		return tr, badRequest("Invalid time_range: must be one of " + exporter.RangeNames(allowed))
	}
	return tr, nil
}

// toolBreakdown serves GET /metrics/tool-breakdown.
func (a *api) toolBreakdown(w http.ResponseWriter, r *http.Request) {
	tr, err := timeRange(r, exporter.BreakdownRanges)
	if err != nil {
		writeError(w, a.logger, err)
		return
	}
	out, err := a.reporter.ToolBreakdown(r.Context(), tr, r.URL.Query().Get("tool_id"))
	if err != nil {
		writeError(w, a.logger, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// apiSavings serves GET /metrics/api-savings.
func (a *api) apiSavings(w http.ResponseWriter, r *http.Request) {
	tr, err := timeRange(r, exporter.SavingsRanges)
	if err != nil {
		writeError(w, a.logger, err)
		return
	}
	out, err := a.reporter.APISavings(r.Context(), tr, r.URL.Query().Get("tool_id"))
	if err != nil {
		writeError(w, a.logger, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}
