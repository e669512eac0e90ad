package handlers

import (
	"errors"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

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

// aggregate serves GET /metrics/aggregate: the operations matching the
// list's filters, grouped by one to three dimensions, the largest groups
// first.
func (h reportRoutes) aggregate(_ http.ResponseWriter, r *http.Request) (any, error) {
	req, err := parseAggregateQuery(r.URL.Query())
	if err != nil {
		return nil, err
	}
	return h.svc.Aggregate(r.Context(), req)
}

// parseAggregateQuery reads GET /metrics/aggregate's parameters: group_by
// (required; several group_by parameters are joined as one list), order_by
// (default tokens_prevented), limit (1..1000, default 100, as the list's)
// and the list's filters, read by the list's own parser (its offset is not
// this endpoint's and is ignored). Errors come as the list's do, 422
// before 400: a bad limit or a missing group_by (422), then group_by,
// order_by, then the filters (400).
func parseAggregateQuery(q url.Values) (exporter.AggregateRequest, error) {
	q = maps.Clone(q)
	q.Del("offset")
	var names []string
	for _, v := range q["group_by"] {
		if v != "" {
			names = append(names, v)
		}
	}
	f, filterErr := parseOperationFilter(q)
	var errs []api.FieldError
	var ve *validationError
	if errors.As(filterErr, &ve) {
		errs = ve.errs
	}
	if len(names) == 0 {
		errs = append(errs, api.FieldError{Loc: []any{"query", "group_by"}, Msg: "Field required", Type: "missing"})
	}
	if len(errs) > 0 {
		return exporter.AggregateRequest{}, &validationError{errs: errs}
	}
	dims, err := exporter.ParseGroupBy(strings.Join(names, ","))
	if err != nil {
		return exporter.AggregateRequest{}, badRequest("Invalid group_by: " + err.Error())
	}
	req := exporter.AggregateRequest{GroupBy: dims, OrderBy: api.OrderTokensPrevented, Limit: f.Limit}
	if s := q.Get("order_by"); s != "" {
		if !slices.Contains(api.AggregateOrders, s) {
			return req, badRequest("Invalid order_by: must be one of " + strings.Join(api.AggregateOrders, ", "))
		}
		req.OrderBy = s
	}
	if filterErr != nil {
		return req, filterErr
	}
	f.Limit, f.Offset = 0, 0
	req.Filter = f
	return req, nil
}
