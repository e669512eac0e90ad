package schema

import (
	"encoding/base64"
	"strings"
	"unicode/utf8"
)

// EncodedPrefix marks a tag or string field value stored base64url-encoded
// (see TagValue and FieldString).
const EncodedPrefix = "~b64~"

// TagValue answers v as stored in a tag. Line protocol cannot carry every
// string in a tag: not a line break, not a trailing backslash (it would
// escape the separator after it), and InfluxDB 1.x rejects invalid UTF-8.
// Such values, and any value that starts with EncodedPrefix, are stored as
// EncodedPrefix + base64url(v); every other value as it is. The mapping is
// injective, so equality filters work on the stored form, and Decode
// reverses it.
func TagValue(v string) string {
	if safeTag(v) {
		return v
	}
	return encode(v)
}

func safeTag(v string) bool {
	if v == "" || strings.HasPrefix(v, EncodedPrefix) || strings.HasSuffix(v, `\`) || !utf8.ValidString(v) {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] == 0x7f {
			return false
		}
	}
	return true
}

// FieldString answers v as stored in a string field. Line protocol carries
// any string field, but Flux's CSV answers (1.8 and 2.x: Go's encoding/csv
// with CRLF line ends) drop every carriage return inside a value. Values
// holding one, invalid UTF-8, or starting with EncodedPrefix are stored as
// EncodedPrefix + base64url(v); Decode reverses it.
func FieldString(v string) string {
	if strings.ContainsRune(v, '\r') || strings.HasPrefix(v, EncodedPrefix) || !utf8.ValidString(v) {
		return encode(v)
	}
	return v
}

func encode(v string) string {
	return EncodedPrefix + base64.RawURLEncoding.EncodeToString([]byte(v))
}

// Decode reverses TagValue and FieldString.
func Decode(v string) string {
	if rest, ok := strings.CutPrefix(v, EncodedPrefix); ok {
		if b, err := base64.RawURLEncoding.DecodeString(rest); err == nil {
			return string(b)
		}
	}
	return v
}
