package tsdb

import (
	"errors"
	"time"
	"unicode/utf8"

	"github.com/omnimemory/omnimemory-metrics/client/api"
)

// The rules of this file are what the API accepts of an operation's fields
// (CONTRACT.md, POST /track/tool-operation). The HTTP layer applies them to
// requests and the import of the original service's database to its rows, so
// that no path stores an operation the other would refuse.

// MaxParameterDepth bounds the nesting of an operation's parameters object.
const MaxParameterDepth = 32

// ValidToolID reports whether s is a tool_id the API accepts: not empty and
// at most api.MaxToolIDLength characters.
func ValidToolID(s string) bool {
	return s != "" && utf8.RuneCountInString(s) <= api.MaxToolIDLength
}

// ValidModel reports whether s is a model name a spend point may carry:
// empty (not reported) or at most api.MaxModelLength characters.
func ValidModel(s string) bool {
	return utf8.RuneCountInString(s) <= api.MaxModelLength
}

// DefaultTokensPrevented is tokens_prevented when a client leaves it out:
// max(0, original - actual).
func DefaultTokensPrevented(original, actual int64) int64 {
	return max(original-actual, 0)
}

// ValidTokensPrevented reports whether prevented is one of the two forms
// real clients send for original and actual (both >= 0): original - actual
// (negative when the tool cost more than its baseline), or max(0, original -
// actual).
func ValidTokensPrevented(original, actual, prevented int64) bool {
	diff := original - actual // both >= 0: cannot overflow
	return prevented == diff || prevented == max(diff, 0)
}

// JSONDepth answers the deepest nesting of arrays and objects in a JSON
// value.
func JSONDepth(v []byte) int {
	d, deepest := 0, 0
	inString, escaped := false, false
	for _, c := range v {
		switch {
		case escaped:
			escaped = false
		case inString:
			if c == '\\' {
				escaped = true
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			d++
			deepest = max(deepest, d)
		case c == '}' || c == ']':
			d--
		}
	}
	return deepest
}

// Errors of CheckCreatedAt.
var (
	// ErrCreatedAtTooOld: the time is before 1970.
	ErrCreatedAtTooOld = errors.New("created_at is before 1970")
	// ErrCreatedAtFuture: the time is more than api.MaxClockSkew ahead of now.
	ErrCreatedAtFuture = errors.New("created_at is too far ahead of the clock")
)

// CheckCreatedAt answers the created_at to store for a client's t at the
// clock's now: t in UTC, truncated to the microsecond; now when t is ahead
// of now by at most api.MaxClockSkew (clock skew). A time before 1970 is
// ErrCreatedAtTooOld, one further ahead ErrCreatedAtFuture.
func CheckCreatedAt(t, now time.Time) (time.Time, error) {
	t = t.UTC().Truncate(time.Microsecond)
	if t.Year() < 1970 {
		return now, ErrCreatedAtTooOld
	}
	if t.After(now) {
		if t.Sub(now) > api.MaxClockSkew {
			return now, ErrCreatedAtFuture
		}
		return now, nil
	}
	return t, nil
}
