// Package ui serves the service's built-in page: a savings overview at "/"
// for users without Grafana, drawn in the browser from /metrics/api-savings
// and /metrics/tool-breakdown. Its HTML, CSS and JavaScript are embedded in
// the binary, so the page works offline and loads nothing from elsewhere;
// a Content-Security-Policy of default-src 'self' without inline script
// holds it to that.
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed assets
var assets embed.FS

// ContentSecurityPolicy is sent with every answer of the page: only the
// service's own scripts, styles and API, no inline script or style, no
// framing.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// AssetPrefix is the path under which the page's assets are served.
const AssetPrefix = "/ui/"

// asset is one embedded file with what its answer needs.
type asset struct {
	name        string
	contentType string
	body        []byte
	etag        string
}

// contentTypes names the type of every served extension; a file of another
// extension is not served.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// Handler serves the page at "/" and its assets at /ui/<name>. Any other
// path under /ui/ answers the service's JSON 404. The page and its assets
// hold no data, so they need no API token; the page asks for one when the
// API answers 401.
type Handler struct {
	index  asset
	assets map[string]asset
}

// New answers the page's handler over the embedded assets.
func New() *Handler {
	h := &Handler{assets: map[string]asset{}}
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			return nil
		}
		body, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		a := asset{name: path.Base(p), contentType: ct, body: body, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		if a.name == "index.html" {
			h.index = a
		} else {
			h.assets[a.name] = a
		}
		return nil
	})
	if err != nil || h.index.body == nil {
		// The assets are compiled in: this happens only to a broken build.
		panic("ui: embedded assets unreadable: " + errString(err))
	}
	return h
}

func errString(err error) string {
	if err == nil {
		return "no index.html"
	}
	return err.Error()
}

// ServeHTTP answers "/" with the page and /ui/<name> with an asset.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var a asset
	switch {
	case r.URL.Path == "/":
		a = h.index
	case strings.HasPrefix(r.URL.Path, AssetPrefix):
		var ok bool
		if a, ok = h.assets[strings.TrimPrefix(r.URL.Path, AssetPrefix)]; !ok {
			NotFound(w)
			return
		}
	default:
		NotFound(w)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", a.contentType)
	hd.Set("Content-Security-Policy", ContentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	// Revalidate every time: a new binary may bring new assets, and the
	// ETag makes an unchanged one a 304.
	hd.Set("Cache-Control", "no-cache")
	hd.Set("ETag", a.etag)
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
}

// NotFound answers the service's JSON 404.
func NotFound(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write([]byte(`{"detail":"Not Found"}` + "\n"))
}
