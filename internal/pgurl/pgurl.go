// Package pgurl knows PostgreSQL connection URLs well enough to recognise
// one and to print one, or a message about one, without its password.
package pgurl

import (
	"net/url"
	"regexp"
	"strings"
)

// Is reports whether s is a PostgreSQL URL: postgresql:// or postgres://.
func Is(s string) bool {
	return strings.HasPrefix(s, "postgresql://") || strings.HasPrefix(s, "postgres://")
}

// secretParams are the query parameters that hold a password.
var secretParams = []string{"password", "sslpassword"}

// Redact answers s with its password, in the user part or as a query
// parameter, replaced by xxxxx, as url.URL.Redacted does: the answer is
// the same whatever the password. A URL that does not parse gets every
// password Scrub finds replaced.
func Redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return Scrub(s, s)
	}
	if q := u.Query(); len(q) > 0 {
		changed := false
		for _, k := range secretParams {
			if q.Has(k) {
				q.Set(k, "xxxxx")
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	return u.Redacted()
}

var secretParam = regexp.MustCompile(`[?&](?:ssl)?password=([^&#]*)`)

// Scrub answers msg with every password of the URL s replaced by xxxxx,
// written as in s or unescaped. It finds them in URLs that do not parse
// too (whose parser errors quote them whole).
func Scrub(s, msg string) string {
	var secrets []string
	add := func(p string) {
		if p == "" {
			return
		}
		secrets = append(secrets, p)
		if u, err := url.PathUnescape(p); err == nil && u != p && u != "" {
			secrets = append(secrets, u)
		}
	}
	rest := s
	if _, after, ok := strings.Cut(s, "://"); ok {
		rest = after
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		if _, pw, ok := strings.Cut(authority[:at], ":"); ok {
			add(pw)
		}
	}
	for _, m := range secretParam.FindAllStringSubmatch(s, -1) {
		add(m[1])
	}
	for _, p := range secrets {
		msg = strings.ReplaceAll(msg, p, "xxxxx")
	}
	return msg
}
