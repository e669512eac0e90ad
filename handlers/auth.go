package handlers

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/omnimemory/omnimemory-metrics/client/api"
)

// accessTokenParam is the query parameter that carries the token to the
// live stream's endpoints, which browsers open without headers.
const accessTokenParam = "access_token"

// requireToken answers 401 to a request without "Authorization: Bearer
// <token>" (or, on the live stream's endpoints only, the query parameter
// access_token), except for /health, /ready, CORS preflight, the documents that
// hold no data (/openapi.json, the built-in page at / and its assets under
// /ui/) and, when metricsPublic, /metrics. An empty token turns the check off. Tokens are
// compared in constant time (over their SHA-256, so that the length of the
// token leaks nothing either).
func requireToken(token string, metricsPublic bool, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodOptions, r.URL.Path == "/health", r.URL.Path == "/ready",
			r.URL.Path == "/openapi.json", r.URL.Path == "/", strings.HasPrefix(r.URL.Path, "/ui/"),
			metricsPublic && r.URL.Path == "/metrics":
			next.ServeHTTP(w, r)
			return
		}
		got, ok := bearer(r.Header.Get("Authorization"))
		stream := r.URL.Path == api.PathStreamOperations || r.URL.Path == api.PathWSOperations
		if !ok && stream {
			// A browser's EventSource and WebSocket cannot send headers.
			got = r.URL.Query().Get(accessTokenParam)
			ok = got != ""
		}
		sum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="omnimemory-metrics"`)
			detail := "Invalid bearer token"
			switch {
			case !ok && stream:
				detail = "Missing bearer token: send Authorization: Bearer <token>, or the query parameter " + accessTokenParam + "=<token>"
			case !ok:
				detail = "Missing bearer token: send Authorization: Bearer <token>"
			}
			writeJSON(w, http.StatusUnauthorized, map[string]string{"detail": detail})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearer answers the token of an "Authorization: Bearer <token>" header.
func bearer(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", false
	}
	return strings.TrimSpace(token), true
}
