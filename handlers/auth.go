package handlers

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// requireToken answers 401 to a request without "Authorization: Bearer
// <token>", except for /health, /ready, CORS preflight, the documents that
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
		sum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="omnimemory-metrics"`)
			detail := "Invalid bearer token"
			if !ok {
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
