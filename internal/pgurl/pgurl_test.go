package pgurl

import (
	"net/url"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgresql://u:hunter2@db:5432/omni", "postgresql://u:xxxxx@db:5432/omni"},
		{"postgres://u@db/omni?sslmode=disable", "postgres://u@db/omni?sslmode=disable"},
		{"postgresql://db/omni?password=hunter2&sslmode=require", "postgresql://db/omni?password=xxxxx&sslmode=require"},
		{"postgresql://db/omni?sslpassword=hunter2", "postgresql://db/omni?sslpassword=xxxxx"},
		{"postgresql://u:hunter2@db:bad port/omni", "postgresql://u:xxxxx@db:bad port/omni"},
	} {
		got := Redact(tc.in)
		if got != tc.want || strings.Contains(got, "hunter2") {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if Redact("postgresql://u:one@db/x") != Redact("postgresql://u:two@db/x") {
		t.Error("the redacted URL depends on the password")
	}
}

func TestScrub(t *testing.T) {
	for _, s := range []string{
		"postgresql://u:hunter2@db:bad port/omni",
		"postgresql://u:hunter2@db/omni?sslmode=nope",
		"postgres://u:hun%3Fter2@db/omni",
		"postgresql://db/omni?sslmode=x&password=hunter2",
	} {
		_, err := url.Parse(s)
		msg := "cannot parse " + s + " (" + strings.ReplaceAll(s, "%3F", "?") + "): " + Redact(s)
		if err != nil {
			msg += err.Error()
		}
		if got := Scrub(s, msg); strings.Contains(got, "ter2") {
			t.Errorf("Scrub(%q) left the password: %s", s, got)
		}
	}
}

func TestIs(t *testing.T) {
	for s, want := range map[string]bool{
		"postgresql://db/x": true, "postgres://db/x": true, "/tmp/omnimemory.db": false,
		"sqlite:///x.db": false, "postgresql:x": false,
	} {
		if Is(s) != want {
			t.Errorf("Is(%q) = %v", s, !want)
		}
	}
}
