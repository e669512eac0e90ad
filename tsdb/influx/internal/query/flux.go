package query

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// fluxString answers s as a Flux string literal, quotes included. Every
// character that could end the literal or start an interpolation is
// escaped: backslash, double quote, and "${" (written \${); line breaks and
// tabs become \n, \r, \t, and bytes that are not valid UTF-8 become \xNN, so
// the literal is a single line that decodes to exactly s. These escapes are
// the same in Flux 0.65 (InfluxDB 1.8) and in the Flux of InfluxDB 2.x.
//
// InfluxDB 1.8 ignores the "params" of parameterized queries, so values are
// put into the query text, always through this function.
func fluxString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			b.WriteString(`\\`)
		case c == '"':
			b.WriteString(`\"`)
		case c == '$' && i+1 < len(s) && s[i+1] == '{':
			b.WriteString(`\${`)
			i += 2
			continue
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c >= utf8.RuneSelf:
			r, w := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && w == 1 {
				fmt.Fprintf(&b, `\x%02x`, c)
			} else {
				b.WriteString(s[i : i+w])
			}
			i += w
			continue
		default:
			b.WriteByte(c)
		}
		i++
	}
	b.WriteByte('"')
	return b.String()
}

// Bounds used where a query has no lower or upper time limit. InfluxDB keeps
// times from 1677-09-21 to 2262-04-11 (int64 nanoseconds since the epoch);
// these are just inside.
var (
	minTime = time.Date(1678, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC)
)

// fluxTime answers t as a Flux time literal (RFC 3339, UTC, nanoseconds).
func fluxTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}

// ceilMicro answers the first whole microsecond at or after t.
func ceilMicro(t time.Time) time.Time {
	tr := t.Truncate(time.Microsecond)
	if tr.Before(t) {
		tr = tr.Add(time.Microsecond)
	}
	return tr
}

// TimeRange answers the [start, stop) range of point times that holds the
// operations with start <= created_at <= end (nil: unbounded). Point times
// are created_at (whole microseconds) plus less than a microsecond (see
// delivery.Slots), so the range is [ceil_us(start), floor_us(end) + 1us). ok is false
// when the range is empty.
func TimeRange(start, end *time.Time) (lo, hi time.Time, ok bool) {
	lo, hi = minTime, maxTime
	if start != nil && start.After(lo) {
		lo = ceilMicro(*start)
	}
	if end != nil && end.Before(hi) {
		hi = end.Truncate(time.Microsecond).Add(time.Microsecond)
	}
	return lo, hi, lo.Before(hi)
}

// fluxRange answers the "range" call for [lo, hi).
func fluxRange(lo, hi time.Time) string {
	return "range(start: " + fluxTime(lo) + ", stop: " + fluxTime(hi) + ")"
}

// pred joins Flux boolean expressions with "and".
func pred(parts ...string) string {
	var keep []string
	for _, p := range parts {
		if p != "" {
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, " and ")
}

// eq answers `r.<column> == "<value>"`, the value escaped.
func eq(column, value string) string {
	return "r." + column + " == " + fluxString(value)
}
