package handlers

import (
	"net/http"

	"github.com/gorilla/mux"
)

// OpenAPIDocument is the embedded document, for the external tests.
var OpenAPIDocument = openAPIDocument

// RouterOf answers the router that h, a handler New answered, dispatches to.
func RouterOf(h http.Handler) *mux.Router { return h.(routed).router }
