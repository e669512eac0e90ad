package handlers

import (
	"log/slog"

	"github.com/gorilla/mux"
)

// OpenAPIDocument is the embedded document, for the external tests.
var OpenAPIDocument = openAPIDocument

// Router answers the router New dispatches to, for svc (which may be nil:
// walking the routes calls none of them).
func Router(svc Service, o Options) *mux.Router {
	return newRouter(svc, o, slog.New(slog.DiscardHandler))
}
