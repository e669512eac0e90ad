package ui_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/omnimemory/omnimemory-metrics/ui"
)

// TestPageAndAssets: the page and every asset it links are served with
// their content type and the page's security headers, through the real
// router, with no token although one is configured.
func TestPageAndAssets(t *testing.T) {
	s := newService(t, "page-secret")
	s.token = "" // the page is fetched as a browser does, without a token
	status, h, page := s.request(http.MethodGet, "/", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /: %d %s", status, page)
	}
	paths := map[string]string{"/": "text/html; charset=utf-8"}
	for _, m := range regexp.MustCompile(`(?:src|href)="(/ui/[^"]+)"`).FindAllStringSubmatch(string(page), -1) {
		paths[m[1]] = ""
	}
	for _, p := range []string{"/ui/app.js", "/ui/style.css", "/ui/favicon.svg"} {
		if _, ok := paths[p]; !ok {
			t.Errorf("the page does not link %s", p)
		}
	}
	want := map[string]string{
		"/ui/app.js": "text/javascript; charset=utf-8", "/ui/style.css": "text/css; charset=utf-8",
		"/ui/favicon.svg": "image/svg+xml",
	}
	for p := range paths {
		if ct, ok := want[p]; ok {
			paths[p] = ct
		}
	}
	for path, ct := range paths {
		status, h, body := s.request(http.MethodGet, path, nil)
		if status != http.StatusOK {
			t.Errorf("GET %s: %d %s", path, status, body)
			continue
		}
		if got := h.Get("Content-Type"); ct != "" && got != ct {
			t.Errorf("GET %s: Content-Type %q, want %q", path, got, ct)
		}
		if got := h.Get("Content-Security-Policy"); got != ui.ContentSecurityPolicy || !strings.HasPrefix(got, "default-src 'self';") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, got)
		}
		for name, v := range map[string]string{"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"} {
			if got := h.Get(name); got != v {
				t.Errorf("GET %s: %s %q, want %q", path, name, got, v)
			}
		}
		if h.Get("ETag") == "" || len(body) == 0 {
			t.Errorf("GET %s: no ETag or empty body", path)
		}
		// Offline: nothing is loaded from elsewhere (the SVG namespace is a name, not a load).
		text := strings.ReplaceAll(string(body), "http://www.w3.org/2000/svg", "")
		if m := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`).FindString(text); m != "" && !strings.HasSuffix(path, ".js") {
			t.Errorf("GET %s refers to another site: %s", path, m)
		}
		if strings.Contains(text, "http://") || strings.Contains(text, "https://") {
			t.Errorf("GET %s holds an absolute URL", path)
		}
	}
	if csp := h.Get("Content-Security-Policy"); strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("CSP allows inline or eval: %q", csp)
	}
	// No inline script, handler or style for the CSP to block.
	for _, re := range []string{`(?i)\son[a-z]+\s*=`, `(?i)\sstyle\s*=`, `(?i)<style`, `(?i)javascript:`} {
		if m := regexp.MustCompile(re).FindString(string(page)); m != "" {
			t.Errorf("the page has inline code or style: %q", m)
		}
	}
	scripts := regexp.MustCompile(`(?is)<script([^>]*)>(.*?)</script>`).FindAllStringSubmatch(string(page), -1)
	if len(scripts) == 0 {
		t.Error("the page has no script")
	}
	for _, m := range scripts {
		if !strings.Contains(m[1], `src="/ui/`) || strings.TrimSpace(m[2]) != "" {
			t.Errorf("inline or foreign script: %s", m[0])
		}
	}

	// The ETag makes an unchanged asset a 304.
	_, h, _ = s.request(http.MethodGet, "/ui/app.js", nil)
	if status, _, _ := s.request(http.MethodGet, "/ui/app.js", nil, "If-None-Match", h.Get("ETag")); status != http.StatusNotModified {
		t.Errorf("GET /ui/app.js with its ETag: %d, want 304", status)
	}

	// The API itself still asks for the token.
	if status, _, body := s.request(http.MethodGet, "/metrics/api-savings", nil); status != http.StatusUnauthorized {
		t.Errorf("GET /metrics/api-savings without a token: %d %s", status, body)
	}
}

// TestUnknownUIPathsAreJSON404: anything under /ui/ that is not an asset,
// the index under another name included, answers the service's JSON 404.
func TestUnknownUIPathsAreJSON404(t *testing.T) {
	s := newService(t, "")
	for _, path := range []string{"/ui/", "/ui/nope.js", "/ui/index.html", "/ui/app.js/x", "/ui/../etc/passwd", "/ui/%2e%2e/go.mod", "/ui/assets/app.js", "/index.html"} {
		status, h, body := s.request(http.MethodGet, path, nil)
		if status != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, status)
			continue
		}
		if ct := h.Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET %s: Content-Type %q", path, ct)
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil || m["detail"] != "Not Found" {
			t.Errorf("GET %s: %s", path, body)
		}
	}
	if status, _, body := s.request(http.MethodPost, "/", []byte("{}")); status != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d %s", status, body)
	}
}

// TestHandlerAlone: the handler outside the router answers the same way,
// so the router only chooses paths.
func TestHandlerAlone(t *testing.T) {
	h := ui.New()
	for path, want := range map[string]int{"/": 200, "/ui/app.js": 200, "/ui/style.css": 200, "/ui/x": 404, "/other": 404} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		if w.Code != want {
			t.Errorf("GET %s: %d, want %d", path, w.Code, want)
		}
		if want == 404 && w.Body.String() != "{\"detail\":\"Not Found\"}\n" {
			t.Errorf("GET %s: %q", path, w.Body.String())
		}
	}
}
