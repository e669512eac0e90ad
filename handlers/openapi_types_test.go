package handlers_test

import (
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/handlers"
)

// jsonFields answers the JSON names of t's fields, embedded structs
// flattened as encoding/json does, and those that are left out when zero.
func jsonFields(t reflect.Type) (names, optional []string) {
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			n, o := jsonFields(f.Type)
			names, optional = append(names, n...), append(optional, o...)
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
		if strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero") {
			optional = append(optional, name)
		}
	}
	sort.Strings(names)
	sort.Strings(optional)
	return names, optional
}

// TestOpenAPIDocumentMatchesTheWireTypes: every schema of the document has
// exactly the JSON fields of its Go type in package api (which the handlers
// encode and the client decodes), and an answer's schema requires every
// field the type always sends; so the document, the service and the client
// cannot drift apart.
func TestOpenAPIDocumentMatchesTheWireTypes(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(handlers.OpenAPIDocument)
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]any{
		"Detail": api.Detail{}, "FieldError": api.FieldError{}, "ValidationError": api.ValidationError{},
		"OperationRequest": api.OperationRequest{}, "BatchRequest": api.BatchRequest{},
		"TrackResponse": api.TrackResponse{}, "BatchResponse": api.BatchResponse{},
		"Operation": api.Operation{}, "ExportedOperation": api.ExportedOperation{}, "OperationPage": api.OperationPage{},
		"ModeBreakdown": api.ModeBreakdown{}, "ToolStats": api.ToolStats{}, "ToolBreakdown": api.ToolBreakdown{},
		"Savings": api.Savings{}, "ToolSavings": api.ToolSavings{}, "TrendPoint": api.TrendPoint{},
		"PreviousPeriod": api.PreviousPeriod{}, "SavingsChange": api.SavingsChange{}, "APISavings": api.APISavings{},
		"MoneyChange": api.Change[float64]{}, "PercentagePointChange": api.Change[float64]{}, "CountChange": api.Change[int64]{},
		"Session": api.Session{}, "SessionRequest": api.SessionRequest{}, "SessionStarted": api.SessionStarted{},
		"SessionGetOrCreate": api.SessionGetOrCreate{}, "Heartbeat": api.Heartbeat{}, "SessionEnded": api.SessionEnded{},
		"ActiveSessions": api.ActiveSessions{}, "Health": api.Health{}, "Ready": api.Ready{},
		"SpendTokens": api.SpendTokens{}, "ModelSpend": api.ModelSpend{}, "ToolSpend": api.ToolSpend{},
		"SpendTrendPoint": api.SpendTrendPoint{}, "Spend": api.Spend{},
		"StreamReset": api.StreamReset{}, "StreamMessage": api.StreamMessage{},
		"AggregateGroup": api.AggregateGroup{}, "Aggregate": api.Aggregate{},
	}
	// Bodies the service takes: their optional fields are the client's to
	// leave out, so "required" is the contract's, not the Go type's.
	requests := map[string]bool{"OperationRequest": true, "BatchRequest": true, "SessionRequest": true}
	for name, ref := range doc.Components.Schemas {
		v, ok := types[name]
		if !ok {
			t.Errorf("schema %s has no Go type in package api", name)
			continue
		}
		want, optional := jsonFields(reflect.TypeOf(v))
		var got []string
		for p := range ref.Value.Properties {
			got = append(got, p)
		}
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("schema %s has properties %v; %T has JSON fields %v", name, got, v, want)
		}
		if requests[name] {
			continue
		}
		for _, f := range want {
			if !slices.Contains(optional, f) && !slices.Contains(ref.Value.Required, f) {
				t.Errorf("schema %s does not require %s, which %T always sends", name, f, v)
			}
		}
	}
	for name := range types {
		if doc.Components.Schemas[name] == nil {
			t.Errorf("api type for %s has no schema in the document", name)
		}
	}
}
