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

// apiSavings serves GET /metrics/api-savings; with compare=previous (a
// bounded time_range only) it adds the previous period and the change from
// it.
func (a *api) apiSavings(w http.ResponseWriter, r *http.Request) {
	tr, err := timeRange(r, exporter.SavingsRanges)
	if err != nil {
		writeError(w, a.logger, err)
		return
	}
	compare, err := comparison(r, tr)
	if err != nil {
		writeError(w, a.logger, err)
		return
	}
	savings := a.reporter.APISavings
	if compare {
		savings = a.reporter.CompareAPISavings
	}
	out, err := savings(r.Context(), tr, r.URL.Query().Get("tool_id"))
	if err != nil {
		writeError(w, a.logger, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// comparison reads compare: absent or empty is no comparison; "previous"
// asks for one, which needs a range with a lower bound; anything else is a
// 400.
func comparison(r *http.Request, tr exporter.TimeRange) (bool, error) {
	switch r.URL.Query().Get("compare") {
	case "":
		return false, nil
	case "previous":
	default:
		return false, badRequest("Invalid compare: must be previous")
	}
	if tr.Duration <= 0 {
		var bounded []exporter.TimeRange
		for _, b := range exporter.SavingsRanges {
			if b.Duration > 0 {
				bounded = append(bounded, b)
			}
		}
		return false, badRequest("compare=previous needs a bounded time_range: one of " + exporter.RangeNames(bounded))
	}
	return true, nil
}
