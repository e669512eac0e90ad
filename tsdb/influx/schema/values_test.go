package schema

import (
	"strings"
	"testing"
)

func TestTagValueRoundTrip(t *testing.T) {
	for _, v := range []string{"claude-code", "", "a b,c=d", "trailing\\", "new\nline", "~b64~x", "tab\there", "bad\xff"} {
		enc := TagValue(v)
		if strings.ContainsAny(enc, "\n\r") || strings.HasSuffix(enc, `\`) {
			t.Errorf("TagValue(%q) = %q: not safe in line protocol", v, enc)
		}
		if got := Decode(enc); got != v {
			t.Errorf("Decode(TagValue(%q)) = %q", v, got)
		}
	}
	if TagValue("claude-code") != "claude-code" {
		t.Error("ordinary values must be stored as they are")
	}
}

func TestFieldStringRoundTrip(t *testing.T) {
	for _, v := range []string{"plain", "", "cr\rlf", "~b64~x", "bad\xff", "new\nline"} {
		if got := Decode(FieldString(v)); got != v {
			t.Errorf("Decode(FieldString(%q)) = %q", v, got)
		}
	}
	if FieldString("new\nline") != "new\nline" {
		t.Error("a line break alone must be stored as it is")
	}
}
